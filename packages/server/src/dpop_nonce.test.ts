import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { signUp, startTestServer, type TestServer } from '../../../test/support/test_server.js';
import { DPOP_NONCE_WINDOW_MS } from './flows/dpop_nonces.js';

describe('server-provided DPoP nonces (--dpop-nonce on, RFC 9449 §8)', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ dpopNonce: true });
  });
  after(() => t?.close());

  async function dpopKey() {
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = await exportJWK(publicKey);
    return (method: string, path: string, nonce?: string) =>
      new SignJWT({ jti: crypto.randomUUID(), htm: method, htu: `${t.server.context.issuer()}${path}`, iat: Math.floor(t.clock.now() / 1000), ...(nonce ? { nonce } : {}) })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
        .sign(privateKey);
  }

  const nonceOf = (res: { headers: Headers }) => res.headers.get('dpop-nonce') ?? '';

  test('every answer carries DPoP-Nonce; a proof without it is refused with use_dpop_nonce and opens no session; with it the login binds', async () => {
    const user = await signUp(t);
    const proof = await dpopKey();
    const health = await t.call('GET', '/health');
    assert.match(nonceOf(health), /^[A-Za-z0-9_-]{32}$/);

    const before = await t.server.context.store.sessions.listActive(user.userId, new Date(t.clock.now()));
    const bare = await t.call('POST', '/auth/login', { headers: { dpop: await proof('POST', '/auth/login') }, body: { username: user.username, password: user.password } });
    assert.equal(bare.status, 401);
    assert.equal(bare.body.error, 'invalid_dpop_proof');
    assert.equal(bare.body.dpop_error, 'use_dpop_nonce', JSON.stringify(bare.body));
    assert.equal(bare.headers.get('www-authenticate'), 'DPoP error="use_dpop_nonce", algs="ES256 EdDSA"');
    assert.equal(nonceOf(bare), nonceOf(health));
    const forged = await t.call('POST', '/auth/login', { headers: { dpop: await proof('POST', '/auth/login', 'made-up-nonce-made-up-nonce-0000') }, body: { username: user.username, password: user.password } });
    assert.equal(forged.body.dpop_error, 'use_dpop_nonce');
    assert.equal((await t.server.context.store.sessions.listActive(user.userId, new Date(t.clock.now()))).length, before.length, 'no session opened');

    const login = await t.call('POST', '/auth/login', { headers: { dpop: await proof('POST', '/auth/login', nonceOf(bare)) }, body: { username: user.username, password: user.password } });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    assert.equal(login.body.token_type, 'DPoP');
  });

  test('a nonce lasts its window and the next; after that a refresh asks for the new one and changes nothing until it comes', async () => {
    const user = await signUp(t);
    const proof = await dpopKey();
    const first = nonceOf(await t.call('GET', '/health'));
    const login = await t.call('POST', '/auth/login', { headers: { dpop: await proof('POST', '/auth/login', first) }, body: { username: user.username, password: user.password } });
    assert.equal(login.status, 200, JSON.stringify(login.body));

    t.clock.advance(DPOP_NONCE_WINDOW_MS / 1000);
    const second = await t.call('POST', '/auth/refresh', { token: login.body.refresh_token, headers: { dpop: await proof('POST', '/auth/refresh', first) } });
    assert.equal(second.status, 200, JSON.stringify(second.body));
    assert.notEqual(nonceOf(second), first, 'and a new one is handed out');

    t.clock.advance(DPOP_NONCE_WINDOW_MS / 1000);
    const stale = await t.call('POST', '/auth/refresh', { token: second.body.refresh_token, headers: { dpop: await proof('POST', '/auth/refresh', first) } });
    assert.equal(stale.status, 401);
    assert.equal(stale.body.dpop_error, 'use_dpop_nonce');
    const third = await t.call('POST', '/auth/refresh', { token: second.body.refresh_token, headers: { dpop: await proof('POST', '/auth/refresh', nonceOf(stale)) } });
    assert.equal(third.status, 200, 'the stale proof rotated nothing: the same refresh token goes on with the fresh nonce');
  });

  test('bearer sessions (no proof) are untouched by nonces', async () => {
    const user = await signUp(t);
    const login = await t.call('POST', '/auth/login', { body: { username: user.username, password: user.password } });
    assert.equal(login.status, 200);
    assert.equal(login.body.token_type, 'Bearer');
    assert.equal((await t.call('POST', '/auth/refresh', { token: login.body.refresh_token })).status, 200);
  });

  test('the nonce key is made once and shared through the database: every instance hands out and accepts the same nonces', async () => {
    const store = t.server.context.store;
    const a = await store.secrets.get('dpop-nonce');
    assert.deepEqual(await store.secrets.get('dpop-nonce'), a);
    assert.equal(a.length, 32);
    assert.notDeepEqual(await store.secrets.get('another'), a);
  });
});
