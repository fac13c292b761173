import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { decodeJwt } from 'jose';
import { SoftAuthenticator } from '../../../test/support/soft_authenticator.js';
import { signUp, startTestServer, type TestServer } from '../../../test/support/test_server.js';
import { AuthClientError, createAuthClient } from './index.js';

/*
 * The real @simplewebauthn/browser runs here, on a stand-in for the browser's WebAuthn
 * API (`PublicKeyCredential`, `navigator.credentials`) backed by the soft authenticator:
 * what the client sends is what a browser would.
 */

type Bytes = ArrayBuffer | ArrayBufferView;
const b64 = (data: Bytes): string =>
  (ArrayBuffer.isView(data) ? Buffer.from(data.buffer, data.byteOffset, data.byteLength) : Buffer.from(data)).toString('base64url');
const bytes = (text: string): ArrayBuffer => {
  const b = Buffer.from(text, 'base64url');
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
};

interface Descriptor {
  id: Bytes;
  type: string;
  transports?: string[];
}

/**
 * The browser's WebAuthn API over a soft authenticator (`use` swaps it: another device);
 * `refuseNext` makes the next ceremony fail as a cancelled prompt does.
 */
function installWebAuthn(origin: string): { use(authn: SoftAuthenticator): SoftAuthenticator; refuseNext(): void } {
  let authn = new SoftAuthenticator({ origin });
  let refuse = false;
  const cancelled = () => {
    refuse = false;
    return new DOMException('The operation either timed out or was not allowed.', 'NotAllowedError');
  };
  const credentials = {
    async create(options: { publicKey: { challenge: Bytes; rp: { id?: string; name: string }; user: { id: Bytes; name: string; displayName: string }; pubKeyCredParams: { alg: number; type: string }[]; excludeCredentials?: Descriptor[] } }) {
      if (refuse) throw cancelled();
      const o = options.publicKey;
      const json = authn.register({
        challenge: b64(o.challenge),
        rp: o.rp,
        user: { ...o.user, id: b64(o.user.id) },
        pubKeyCredParams: o.pubKeyCredParams,
        excludeCredentials: (o.excludeCredentials ?? []).map((c) => ({ ...c, id: b64(c.id) })),
      });
      return {
        id: json.id,
        rawId: bytes(json.rawId),
        type: json.type,
        authenticatorAttachment: json.authenticatorAttachment,
        getClientExtensionResults: () => json.clientExtensionResults,
        response: {
          clientDataJSON: bytes(json.response.clientDataJSON),
          attestationObject: bytes(json.response.attestationObject),
          getTransports: () => json.response.transports,
          getAuthenticatorData: () => bytes(json.response.authenticatorData),
          getPublicKey: () => bytes(json.response.publicKey),
          getPublicKeyAlgorithm: () => json.response.publicKeyAlgorithm,
        },
      };
    },
    async get(options: { publicKey: { challenge: Bytes; rpId?: string; allowCredentials?: Descriptor[]; userVerification?: string } }) {
      if (refuse) throw cancelled();
      const o = options.publicKey;
      const json = authn.authenticate({
        challenge: b64(o.challenge),
        ...(o.rpId === undefined ? {} : { rpId: o.rpId }),
        allowCredentials: (o.allowCredentials ?? []).map((c) => ({ ...c, id: b64(c.id) })),
      });
      return {
        id: json.id,
        rawId: bytes(json.rawId),
        type: json.type,
        authenticatorAttachment: json.authenticatorAttachment,
        getClientExtensionResults: () => json.clientExtensionResults,
        response: {
          clientDataJSON: bytes(json.response.clientDataJSON),
          authenticatorData: bytes(json.response.authenticatorData),
          signature: bytes(json.response.signature),
          userHandle: json.response.userHandle === undefined ? null : bytes(json.response.userHandle),
        },
      };
    },
  };
  Object.defineProperty(globalThis, 'PublicKeyCredential', { value: class PublicKeyCredential {}, configurable: true, writable: true });
  Object.defineProperty(globalThis, 'navigator', { value: { credentials }, configurable: true, writable: true });
  return {
    use(next) {
      authn = next;
      return next;
    },
    refuseNext() {
      refuse = true;
    },
  };
}

let t: TestServer;
let webauthn: ReturnType<typeof installWebAuthn>;
before(async () => {
  t = await startTestServer();
  webauthn = installWebAuthn(origin());
});
after(() => t?.close());

const origin = () => new URL(t.server.context.publicUrl()).origin;
const client = () => createAuthClient({ baseUrl: t.url, autoRefresh: false, crossTab: false });

test('registerPasskey adds one to the signed-in account; loginWithPasskey then signs in without a password (amr hwk), with or without the username', async () => {
  const user = await signUp(t);
  const owner = client();
  const laptop = webauthn.use(new SoftAuthenticator({ origin: origin() }));
  try {
    await owner.login(user.username, user.password);
    const passkey = await owner.registerPasskey({ name: 'Work laptop' });
    assert.equal(passkey.name, 'Work laptop');
    assert.match(passkey.id, /^[0-9a-f-]{36}$/);
    assert.equal(passkey.createdAt, new Date(t.clock.now()).toISOString());
    t.clock.advance(1);
    webauthn.use(new SoftAuthenticator({ origin: origin() }));
    assert.equal((await owner.registerPasskey()).name, 'Passkey 2', 'the server names it');
    webauthn.use(laptop);
  } finally {
    owner.close();
  }

  for (const options of [undefined, { username: user.username }]) {
    const c = client();
    try {
      const session = await c.loginWithPasskey(options);
      assert.equal(session.username, user.username);
      assert.equal(session.userId, user.userId);
      assert.deepEqual(decodeJwt(c.getAccessToken()!).amr, ['hwk']);
      assert.equal((await c.fetch(`${t.url}/auth/me`)).status, 200);
      // The refresh token is kept (memory storage in Node): the session goes on.
      assert.equal((await c.refresh())?.username, user.username);
      assert.deepEqual(decodeJwt(c.getAccessToken()!).amr, ['hwk']);
    } finally {
      c.close();
    }
  }
});

test('failures: the server’s are AuthClientErrors with its code; a cancelled prompt is the browser’s error; neither leaves a session', async () => {
  const user = await signUp(t);
  const c = client();
  webauthn.use(new SoftAuthenticator({ origin: origin() }));
  try {
    await assert.rejects(c.registerPasskey(), (e: AuthClientError) => e instanceof AuthClientError && e.code === 'invalid_token', 'not signed in');
    await c.login(user.username, user.password);
    const { id } = await c.registerPasskey();
    webauthn.refuseNext();
    await assert.rejects(c.registerPasskey(), (e: Error) => !(e instanceof AuthClientError) && e.name === 'NotAllowedError');
    assert.equal((await (await c.fetch(`${t.url}/auth/passkeys`)).json()).passkeys.length, 1);
    assert.equal((await c.fetch(`${t.url}/auth/passkeys/${id}`, { method: 'DELETE' })).status, 204);
    await c.logout();

    // Its credential is gone from the server, not from the authenticator: the assertion is refused.
    const other = client();
    try {
      await assert.rejects(other.loginWithPasskey(), (e: AuthClientError) => e instanceof AuthClientError && e.code === 'invalid_code' && e.status === 401);
      // With the name, the options list none of the authenticator's credentials: the browser finds nothing.
      await assert.rejects(other.loginWithPasskey({ username: user.username }), (e: Error) => !(e instanceof AuthClientError) && /no credential/.test(e.message));
      webauthn.refuseNext();
      await assert.rejects(other.loginWithPasskey(), (e: Error) => e.name === 'NotAllowedError');
      assert.equal(other.getAccessToken(), null);
      assert.equal(await other.getSession(), null);
    } finally {
      other.close();
    }
  } finally {
    c.close();
  }
});

test('@simplewebauthn/browser is imported on first use only (a dynamic import), so apps without passkeys do not bundle it', () => {
  for (const file of ['passkeys.ts', 'create_auth_client.ts', 'index.ts']) {
    const source = readFileSync(new URL(file, import.meta.url), 'utf8');
    const staticImports = source.match(/^\s*(?:import|export)\s+(?!type\b)[^;]*?from\s+['"]@simplewebauthn\/browser['"]/gm) ?? [];
    assert.deepEqual(staticImports, [], `${file} imports @simplewebauthn/browser statically`);
  }
  assert.match(readFileSync(new URL('passkeys.ts', import.meta.url), 'utf8'), /import\('@simplewebauthn\/browser'\)/);
});
