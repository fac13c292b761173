import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { accessTokenHash } from '@tessera/verify';
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { signUp, startTestServer, type TestServer } from '../../../test/support/test_server.js';

/** A client key and the proofs it signs (ES256 or EdDSA), against the test server's clock. */
async function dpopKey(t: TestServer, alg: 'ES256' | 'EdDSA' = 'ES256') {
  const { privateKey, publicKey } = await generateKeyPair(alg);
  const jwk = await exportJWK(publicKey);
  const jkt = await calculateJwkThumbprint(jwk);
  const proof = (method: string, path: string, extra: Record<string, unknown> = {}) =>
    new SignJWT({ jti: crypto.randomUUID(), htm: method, htu: `${t.server.context.issuer()}${path}`, iat: Math.floor(t.clock.now() / 1000), ...extra })
      .setProtectedHeader({ alg, typ: 'dpop+jwt', jwk })
      .sign(privateKey);
  return { jkt, proof, withAth: async (method: string, path: string, token: string) => proof(method, path, { ath: await accessTokenHash(token) }) };
}

describe('sender-constrained sessions (DPoP, RFC 9449)', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t?.close());

  async function boundLogin(alg: 'ES256' | 'EdDSA' = 'ES256') {
    const user = await signUp(t);
    const key = await dpopKey(t, alg);
    const login = await t.call('POST', '/auth/login', { headers: { dpop: await key.proof('POST', '/auth/login') }, body: { username: user.username, password: user.password } });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    return { user, key, pair: login.body };
  }

  const refresh = async (token: string, dpop?: string) => t.call('POST', '/auth/refresh', { token, ...(dpop ? { headers: { dpop } } : {}) });

  test('a login with a proof binds the session: token_type DPoP, cnf.jkt in both tokens, the session list says so', async () => {
    for (const alg of ['ES256', 'EdDSA'] as const) {
      const { key, pair } = await boundLogin(alg);
      assert.equal(pair.token_type, 'DPoP');
      assert.deepEqual(decodeJwt(pair.access_token).cnf, { jkt: key.jkt });
      assert.deepEqual(decodeJwt(pair.refresh_token).cnf, { jkt: key.jkt });
      const sessions = await t.call('GET', '/auth/sessions', { headers: { authorization: `DPoP ${pair.access_token}`, dpop: await key.withAth('GET', '/auth/sessions', pair.access_token) } });
      assert.equal(sessions.status, 200, JSON.stringify(sessions.body));
      const listed = sessions.body.sessions as { current: boolean; dpop_bound: boolean }[];
      assert.equal(listed.find((s) => s.current)?.dpop_bound, true);
      assert.ok(listed.some((s) => !s.current && !s.dpop_bound), 'the sign-up session, made without a proof, is not bound');
    }
  });

  test('a refresh needs a fresh proof by the same key; without one (or with a thief’s key, a replay, another URL) it is 401 invalid_dpop_proof and changes nothing', async () => {
    const { user, key, pair } = await boundLogin();
    const thief = await dpopKey(t);
    const replayed = await key.proof('POST', '/auth/refresh');
    assert.equal((await refresh(pair.refresh_token, replayed)).status, 200, 'the real client refreshes');
    const after = (await refresh(pair.refresh_token, await key.proof('POST', '/auth/refresh'))).body; // grace replay: same successor
    const attempts = [
      await refresh(after.refresh_token),
      await refresh(after.refresh_token, await thief.proof('POST', '/auth/refresh')),
      await refresh(after.refresh_token, replayed),
      await refresh(after.refresh_token, await key.proof('POST', '/auth/login')),
      await refresh(after.refresh_token, await key.proof('GET', '/auth/refresh')),
      await refresh(after.refresh_token, await key.proof('POST', '/auth/refresh', { iat: Math.floor(t.clock.now() / 1000) - 120 })),
      await t.call('POST', '/auth/refresh', { body: { refresh_token: after.refresh_token } }),
    ];
    for (const res of attempts) {
      assert.equal(res.status, 401);
      assert.equal(res.body.error, 'invalid_dpop_proof');
      assert.match(res.headers.get('www-authenticate') ?? '', /^DPoP error="invalid_dpop_proof", algs="ES256 EdDSA"$/);
    }
    // Nothing changed: no rotation, no revocation; the real client goes on.
    const next = await refresh(after.refresh_token, await key.proof('POST', '/auth/refresh'));
    assert.equal(next.status, 200, JSON.stringify(next.body));
    assert.equal(next.body.token_type, 'DPoP');
    const live = await t.server.context.store.sessions.listActive(user.userId, new Date(t.clock.now()));
    assert.ok(live.some((s) => s.id === pair.session_id), 'the bound session lives');
    const rejected = await t.server.context.store.audit.list({ userId: user.userId, event: 'dpop.rejected', limit: 10 });
    assert.ok(rejected.length >= 1, 'audited');
  });

  test('the auth server’s own routes: a bound access token counts only as DPoP with a proof over it (ath); an unbound one only as Bearer', async () => {
    const { key, pair } = await boundLogin();
    const me = (headers: Record<string, string>) => t.call('GET', '/auth/me', { headers });
    assert.equal((await me({ authorization: `Bearer ${pair.access_token}` })).body.error, 'invalid_token');
    assert.equal((await me({ authorization: `DPoP ${pair.access_token}` })).body.error, 'invalid_dpop_proof');
    assert.equal((await me({ authorization: `DPoP ${pair.access_token}`, dpop: await key.proof('GET', '/auth/me') })).body.error, 'invalid_dpop_proof', 'no ath');
    assert.equal((await me({ authorization: `DPoP ${pair.access_token}`, dpop: await key.withAth('GET', '/auth/me', 'another token') })).body.error, 'invalid_dpop_proof');
    assert.equal((await me({ authorization: `DPoP ${pair.access_token}`, dpop: await key.withAth('GET', '/auth/me', pair.access_token) })).status, 200);
    const plain = await signUp(t);
    assert.equal((await me({ authorization: `Bearer ${plain.pair.access_token}` })).status, 200, 'unbound sessions work as before');
    assert.equal((await me({ authorization: `DPoP ${plain.pair.access_token}`, dpop: await key.withAth('GET', '/auth/me', plain.pair.access_token) })).body.error, 'invalid_token');
  });

  test('a stolen refresh token cannot log its owner out: logout of a bound session needs the key', async () => {
    const { key, pair } = await boundLogin();
    assert.equal((await t.call('POST', '/auth/logout', { token: pair.refresh_token })).body.error, 'invalid_dpop_proof');
    assert.equal((await refresh(pair.refresh_token, await key.proof('POST', '/auth/refresh'))).status, 200, 'still alive');
    const { key: key2, pair: pair2 } = await boundLogin();
    assert.equal((await t.call('POST', '/auth/logout', { token: pair2.refresh_token, headers: { dpop: await key2.proof('POST', '/auth/logout') } })).status, 204);
  });

  test('a bad proof at login opens no session', async () => {
    const user = await signUp(t);
    const key = await dpopKey(t);
    const res = await t.call('POST', '/auth/login', { headers: { dpop: await key.proof('POST', '/auth/refresh') }, body: { username: user.username, password: user.password } });
    assert.equal(res.status, 401);
    assert.equal(res.body.error, 'invalid_dpop_proof');
    assert.equal((await t.server.context.store.sessions.listActive(user.userId, new Date(t.clock.now()))).length, 1, 'only the sign-up helper’s');
  });

  test('cookie mode and the OAuth form grant take proofs too; a refused proof keeps the cookie', async () => {
    const user = await signUp(t);
    const key = await dpopKey(t);
    const origin = { origin: t.url };
    const login = await t.call('POST', '/auth/login', { headers: { ...origin, dpop: await key.proof('POST', '/auth/login') }, body: { username: user.username, password: user.password, use_cookie: true } });
    assert.equal(login.body.token_type, 'DPoP');
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0]!;
    const refused = await t.call('POST', '/auth/refresh', { headers: { ...origin, cookie } });
    assert.equal(refused.body.error, 'invalid_dpop_proof');
    assert.equal(refused.headers.get('set-cookie'), null, 'the cookie is not cleared');
    const ok = await t.call('POST', '/auth/refresh', { headers: { ...origin, cookie, dpop: await key.proof('POST', '/auth/refresh') } });
    assert.equal(ok.status, 200);

    const { key: k2, pair } = await boundLogin();
    const form = (dpop?: string) =>
      fetch(`${t.url}/auth/refresh`, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', ...(dpop ? { dpop } : {}) },
        body: `grant_type=refresh_token&refresh_token=${pair.refresh_token}`,
      });
    const noProof = await form();
    assert.equal(noProof.status, 400);
    assert.equal((await noProof.json()).error, 'invalid_dpop_proof');
    const withProof = await form(await k2.proof('POST', '/auth/refresh'));
    assert.equal(withProof.status, 200);
    assert.equal((await withProof.json()).token_type, 'DPoP');
  });

  test('the proof names the URL under the issuer whatever form the request target took: origin form, a query, or absolute form', async () => {
    const { key, pair } = await boundLogin();
    const { hostname, port } = new URL(t.url);
    const post = (target: string, proof: string, token: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), hostname);
        let answer = '';
        socket.setEncoding('utf8').on('data', (d: string) => (answer += d));
        socket.on('error', reject).on('close', () => resolve(answer));
        socket.write(`POST ${target} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\nAuthorization: Bearer ${token}\r\nDPoP: ${proof}\r\nContent-Length: 0\r\n\r\n`);
      });
    const body = (answer: string) => JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { refresh_token: string; error?: string };
    let token = pair.refresh_token;
    for (const target of ['/auth/refresh?via=query', `${t.url}/auth/refresh`, `http://elsewhere.example/auth/refresh`]) {
      const answer = await post(target, await key.proof('POST', '/auth/refresh'), token);
      assert.match(answer, /^HTTP\/1\.1 200 /, `${target}: ${answer.slice(0, 300)}`);
      token = body(answer).refresh_token;
    }
    // A proof for another path is still refused, in absolute form too.
    const refused = await post(`${t.url}/auth/refresh`, await key.proof('POST', '/auth/login'), token);
    assert.match(refused, /^HTTP\/1\.1 401 /);
    assert.equal(body(refused).error, 'invalid_dpop_proof');
  });
});

describe('DPoP proofs at login and the address limit', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ rateLimit: 'ip=5/1m,user=100/1m' });
  });
  after(() => t?.close());

  test('a client over its limit gets 429 before its proof is looked at: a flood cannot fill the replay cache', async () => {
    const cache = t.server.context.dpopReplay as unknown as { size: number };
    const key = await dpopKey(t);
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const res = await t.call('POST', '/auth/login', { headers: { dpop: await key.proof('POST', '/auth/login') }, body: { username: 'nobody-here', password: 'wrong password' } });
      statuses.push(res.status);
    }
    assert.deepEqual(statuses, [...Array(5).fill(401), ...Array(7).fill(429)]);
    assert.equal(cache.size, 5, 'only the proofs of requests within the limit were remembered');
  });
});
