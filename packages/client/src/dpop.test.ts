import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { calculateJwkThumbprint, decodeJwt, decodeProtectedHeader, exportJWK } from 'jose';
import { signUp, startTestServer, type TestServer } from '../../../test/support/test_server.js';
import { type AuthClient, type AuthClientError, createAuthClient } from './index.js';

/** The server's nonce window (5 minutes): a nonce is accepted in its window and the next. */
const NONCE_WINDOW_MS = 5 * 60_000;

describe('@tessera/client with DPoP (Node)', () => {
  let t: TestServer;
  let issuer: string;
  before(async () => {
    t = await startTestServer();
    issuer = t.server.context.issuer();
  });
  after(() => t?.close());

  /** A client that records what it sends. */
  function recordingClient(options: Partial<Parameters<typeof createAuthClient>[0]> = {}) {
    const sent: { url: string; authorization: string | null; dpop: string | null }[] = [];
    const client = createAuthClient({
      baseUrl: issuer,
      autoRefresh: false,
      dpop: true,
      fetch: async (input, init) => {
        const request = new Request(input, init);
        sent.push({ url: request.url, authorization: request.headers.get('authorization'), dpop: request.headers.get('dpop') });
        return fetch(request);
      },
      ...options,
    });
    return { client, sent };
  }

  async function closing<T>(client: AuthClient, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } finally {
      client.close();
    }
  }

  test('login binds the session to the client’s key: token_type DPoP, cnf.jkt its thumbprint; fetch sends DPoP with ath; refresh works', async () => {
    const user = await signUp(t);
    const { client, sent } = recordingClient();
    await closing(client, async () => {
      await client.login(user.username, user.password);
      const login = sent.findLast((s) => s.url.endsWith('/auth/login'))!;
      const header = decodeProtectedHeader(login.dpop!);
      assert.equal(header.typ, 'dpop+jwt');
      assert.equal(header.alg, 'ES256');
      assert.deepEqual(Object.keys(header.jwk!).sort(), ['crv', 'kty', 'x', 'y'], 'a public jwk only');
      const jkt = await calculateJwkThumbprint(header.jwk!);
      const token = client.getAccessToken()!;
      assert.deepEqual(decodeJwt(token).cnf, { jkt });

      const me = await client.fetch(`${issuer}/auth/me`);
      assert.equal(me.status, 200, await me.clone().text());
      const call = sent.at(-1)!;
      assert.equal(call.authorization, `DPoP ${token}`);
      const proof = decodeJwt(call.dpop!);
      assert.equal(proof.htm, 'GET');
      assert.equal(proof.htu, `${issuer}/auth/me`);
      assert.equal(typeof proof.ath, 'string');

      t.clock.advance(16 * 60);
      assert.ok(await client.refresh());
      assert.notEqual(client.getAccessToken(), token);
      assert.equal((await client.fetch(`${issuer}/auth/me`)).status, 200);
      const sessions = (await (await client.fetch(`${issuer}/auth/sessions`)).json()) as { sessions: { current: boolean; dpop_bound: boolean }[] };
      assert.equal(sessions.sessions.find((s) => s.current)?.dpop_bound, true);
    });
  });

  test('a stolen refresh token is worthless without the key, and the real client keeps refreshing', async () => {
    const user = await signUp(t);
    let stolen: string | null = null;
    const storage = {
      get: () => stolen,
      set: (value: string) => {
        stolen = value;
      },
      clear: () => {
        stolen = null;
      },
    };
    const { client } = recordingClient({ storage });
    await closing(client, async () => {
      await client.login(user.username, user.password);
      const copy = stolen!;
      // The thief: no proof, or a proof by a key of their own.
      const bare = await fetch(`${issuer}/auth/refresh`, { method: 'POST', headers: { authorization: `Bearer ${copy}` } });
      assert.equal(bare.status, 401);
      assert.equal(((await bare.json()) as { error: string }).error, 'invalid_dpop_proof');
      const thief = createAuthClient({ baseUrl: issuer, autoRefresh: false, dpop: true, storage: { get: () => copy, set: () => {}, clear: () => {} } });
      assert.equal(await thief.refresh(), null, 'the thief’s key is not the bound one');
      thief.close();
      // Nothing changed: the owner refreshes on.
      t.clock.advance(60);
      assert.ok(await client.refresh());
      assert.ok(await client.refresh());
      assert.equal((await client.fetch(`${issuer}/auth/me`)).status, 200);
    });
  });

  test('a key pair the app gives is the one used; a key made on another clock still signs in (the client learns the server’s Date)', async () => {
    const user = await signUp(t);
    const keyPair = (await crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify'])) as CryptoKeyPair;
    const { client, sent } = recordingClient({ dpop: { keyPair } });
    await closing(client, async () => {
      // The test server's clock is in 2030: the first proof (by this machine's clock) is refused, the second carries the server's time.
      await client.login(user.username, user.password);
      const logins = sent.filter((s) => s.url.endsWith('/auth/login'));
      assert.equal(logins.length, 2, 'one retry, with the clock corrected');
      assert.ok(Math.abs((decodeJwt(logins[1]!.dpop!).iat as number) * 1000 - t.clock.now()) < 5000);
      assert.deepEqual(decodeJwt(client.getAccessToken()!).cnf, { jkt: await calculateJwkThumbprint(await exportJWK(keyPair.publicKey)) });
    });
  });

  test('without dpop (the Node default) sessions stay bearer sessions', async () => {
    const user = await signUp(t);
    const client = createAuthClient({ baseUrl: issuer, autoRefresh: false });
    await closing(client, async () => {
      await client.login(user.username, user.password);
      assert.equal(decodeJwt(client.getAccessToken()!).cnf, undefined);
      assert.equal((await client.fetch(`${issuer}/auth/me`)).status, 200);
    });
  });

  test('logout of a bound session works with the key', async () => {
    const user = await signUp(t);
    const { client } = recordingClient();
    await closing(client, async () => {
      await client.login(user.username, user.password);
      const token = client.getAccessToken()!;
      await client.logout();
      const after = await t.server.context.store.sessions.findWithUser(decodeJwt(token).sid as string);
      assert.ok(after?.session.revokedAt, 'the session ended on the server');
    });
  });

  test('bad options are a TypeError', () => {
    assert.throws(() => createAuthClient({ baseUrl: issuer, dpop: { keyPair: {} as CryptoKeyPair } }), TypeError);
    void (null as unknown as AuthClientError);
  });
});

describe('@tessera/client with server nonces (--dpop-nonce on)', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ dpopNonce: true });
  });
  after(() => t?.close());

  test('@tessera/client retries once with the nonce it is given: login, refresh and fetch work with a bound session', async () => {
    const user = await signUp(t);
    const issuer = t.server.context.issuer();
    let calls = 0;
    const client = createAuthClient({
      baseUrl: issuer,
      autoRefresh: false,
      dpop: true,
      fetch: (input, init) => {
        calls++;
        return fetch(input, init);
      },
    });
    try {
      await client.login(user.username, user.password);
      assert.equal(calls, 2, 'one refusal asking for the nonce, then the login');
      t.clock.advance((2 * NONCE_WINDOW_MS) / 1000);
      await client.refresh();
      assert.equal(calls, 4, 'a stale nonce costs one more round trip');
      const me = await client.fetch(`${issuer}/auth/me`);
      assert.equal(me.status, 200, await me.clone().text());
    } finally {
      client.close();
    }
  });

});
