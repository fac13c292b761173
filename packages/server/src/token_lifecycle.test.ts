import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { signUp, startTestServer, type TestServer, uniqueName } from '../../../test/support/test_server.js';
import { refreshJtiHash } from './keys/tokens.js';

const BEARER_INVALID = 'Bearer error="invalid_token"';

describe('token pair lifecycle over HTTP', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ accessTtl: '15m', refreshTtl: '30d', reuseGrace: '10s' });
  });
  after(() => t.close());

  test('register answers 201 {user: {id, username}}', async () => {
    const username = uniqueName();
    const res = await t.call('POST', '/auth/register', { body: { username, password: 'long enough pw' } });
    assert.equal(res.status, 201);
    assert.deepEqual(Object.keys(res.body.user).sort(), ['id', 'username']);
    assert.equal(res.body.user.username, username);
  });

  test('login returns the contract token pair, with the right headers and claims', async () => {
    const { pair, userId, username } = await signUp(t);
    assert.deepEqual(Object.keys(pair).sort(), ['access_token', 'expires_in', 'refresh_expires_in', 'refresh_token', 'session_id', 'token_type']);
    assert.equal(pair.token_type, 'Bearer');
    assert.equal(pair.expires_in, 900);
    assert.equal(pair.refresh_expires_in, 30 * 86400);

    const kid = t.server.context.keys.signer.kid;
    assert.deepEqual(decodeProtectedHeader(pair.access_token), { alg: 'RS256', kid, typ: 'at+jwt' });
    const access = decodeJwt(pair.access_token);
    assert.deepEqual(Object.keys(access).sort(), ['amr', 'aud', 'client_id', 'exp', 'iat', 'iss', 'jti', 'roles', 'sid', 'sub', 'username']);
    assert.deepEqual(access.amr, ['pwd'], 'RFC 8176: a password login');
    assert.equal(access.iss, t.server.context.issuer());
    assert.equal(access.sub, userId);
    assert.equal(access.aud, 'tessera-api');
    assert.equal(access.username, username);
    assert.deepEqual(access.roles, []);
    assert.equal(access.sid, pair.session_id);
    assert.equal(access.exp! - access.iat!, 900);
    assert.equal(access.iat, Math.floor(t.clock.now() / 1000));

    assert.deepEqual(decodeProtectedHeader(pair.refresh_token), { alg: 'RS256', kid, typ: 'refresh+jwt' });
    const refresh = decodeJwt(pair.refresh_token);
    assert.deepEqual(Object.keys(refresh).sort(), ['aud', 'exp', 'iat', 'iss', 'jti', 'sid', 'sub'], 'ids only: no name, no roles');
    assert.equal(refresh.aud, t.server.context.issuer());
    assert.equal(refresh.sub, userId);
  });

  test('the JWKS publishes the public key with kid, alg and use, and no private part', async () => {
    const res = await t.call('GET', '/.well-known/jwks.json');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('cache-control') ?? '', /max-age=\d+/);
    assert.equal(res.body.keys.length, 1);
    const [key] = res.body.keys;
    assert.equal(key.kid, t.server.context.keys.signer.kid);
    assert.equal(key.alg, 'RS256');
    assert.equal(key.use, 'sig');
    for (const secret of ['d', 'p', 'q', 'dp', 'dq', 'qi']) assert.equal(key[secret], undefined);
    const discovery = await t.call('GET', '/.well-known/openid-configuration');
    assert.equal(discovery.body.issuer, t.server.context.issuer());
    assert.equal(discovery.body.jwks_uri, `${t.server.context.issuer()}/.well-known/jwks.json`);
  });

  test('/auth/me answers with the caller', async () => {
    const { pair, userId, username } = await signUp(t);
    const me = await t.call('GET', '/auth/me', { token: pair.access_token });
    assert.equal(me.status, 200);
    assert.deepEqual(me.body, { id: userId, username, roles: [] });
  });

  test('every refresh rotates: a new refresh jti, a new access token, the same session', async () => {
    const { pair } = await signUp(t);
    t.clock.advance(60);
    const res = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    assert.equal(res.status, 200);
    assert.notEqual(decodeJwt(res.body.refresh_token).jti, decodeJwt(pair.refresh_token).jti);
    assert.notEqual(res.body.access_token, pair.access_token);
    assert.equal(res.body.session_id, pair.session_id);
    assert.equal(decodeJwt(res.body.access_token).sid, pair.session_id);
    // The body and the cookie-less JSON body form work too.
    const viaBody = await t.call('POST', '/auth/refresh', { body: { refresh_token: res.body.refresh_token } });
    assert.equal(viaBody.status, 200);
  });

  test('a replay within the grace window returns the same successor (same jti)', async () => {
    const { pair } = await signUp(t);
    const first = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    t.clock.advance(5);
    const second = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    assert.equal(second.status, 200);
    assert.equal(decodeJwt(second.body.refresh_token).jti, decodeJwt(first.body.refresh_token).jti);
    assert.equal(decodeJwt(second.body.refresh_token).exp, decodeJwt(first.body.refresh_token).exp);
    // Whichever response the client kept, it works.
    const next = await t.call('POST', '/auth/refresh', { token: second.body.refresh_token });
    assert.equal(next.status, 200);
  });

  test('a replay after the grace window is token_reused and the successor dies too', async () => {
    const { pair } = await signUp(t);
    const first = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    t.clock.advance(11);
    const theft = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    assert.equal(theft.status, 401);
    assert.equal(theft.body.error, 'token_reused');
    assert.equal(theft.headers.get('www-authenticate'), BEARER_INVALID);
    const successor = await t.call('POST', '/auth/refresh', { token: first.body.refresh_token });
    assert.equal(successor.status, 401);
    assert.equal(successor.body.error, 'token_revoked');
    const me = await t.call('GET', '/auth/me', { token: first.body.access_token });
    assert.equal(me.body.error, 'token_revoked');
  });

  test('a grandparent is token_reused even within the grace window', async () => {
    const { pair } = await signUp(t);
    const b = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    const c = await t.call('POST', '/auth/refresh', { token: b.body.refresh_token });
    assert.equal(c.status, 200);
    const res = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    assert.equal(res.body.error, 'token_reused');
    assert.equal((await t.call('POST', '/auth/refresh', { token: c.body.refresh_token })).body.error, 'token_revoked');
  });

  test('20 parallel refreshes of one token: all succeed with one successor, never a 5xx', async () => {
    const { pair } = await signUp(t);
    const results = await Promise.all(Array.from({ length: 20 }, () => t.call('POST', '/auth/refresh', { token: pair.refresh_token })));
    assert.deepEqual([...new Set(results.map((r) => r.status))], [200]);
    const jtis = new Set(results.map((r) => decodeJwt(r.body.refresh_token).jti));
    assert.equal(jtis.size, 1, 'one lineage');
    const state = await t.server.context.store.sessions.refreshState(pair.session_id);
    assert.ok(state?.previousHash, 'rotated once: the first token is the previous link');
    assert.equal(state?.currentHash, refreshJtiHash(decodeJwt(results[0]!.body.refresh_token).jti!));
  });

  test('an expired access token is token_expired; an expired refresh token is token_expired', async () => {
    const { pair } = await signUp(t);
    t.clock.advance(15 * 60 + 6); // past exp and the 5 s tolerance
    const me = await t.call('GET', '/auth/me', { token: pair.access_token });
    assert.equal(me.status, 401);
    assert.equal(me.body.error, 'token_expired');
    assert.equal(me.headers.get('www-authenticate'), BEARER_INVALID);
    t.clock.advance(30 * 86400);
    const refresh = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    assert.equal(refresh.body.error, 'token_expired');
  });

  test('an access token is never a refresh token, and a refresh token never an access token', async () => {
    const { pair } = await signUp(t);
    const asRefresh = await t.call('POST', '/auth/refresh', { token: pair.access_token });
    assert.equal(asRefresh.status, 401);
    assert.equal(asRefresh.body.error, 'invalid_token');
    const asAccess = await t.call('GET', '/auth/me', { token: pair.refresh_token });
    assert.equal(asAccess.status, 401);
    assert.equal(asAccess.body.error, 'invalid_token');
    assert.equal(asAccess.headers.get('www-authenticate'), BEARER_INVALID);
  });

  test('refresh re-reads the user: a new role shows in the next access token', async () => {
    const { pair, userId } = await signUp(t);
    await t.server.context.store.db.query("UPDATE users SET roles = '{admin}' WHERE id = $1", [userId]);
    const res = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    assert.deepEqual(decodeJwt(res.body.access_token).roles, ['admin']);
  });

  test('a disabled user cannot refresh or use an access token', async () => {
    const { pair, userId } = await signUp(t);
    await t.server.context.store.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [userId]);
    assert.equal((await t.call('GET', '/auth/me', { token: pair.access_token })).body.error, 'token_revoked');
    assert.equal((await t.call('POST', '/auth/refresh', { token: pair.refresh_token })).body.error, 'token_revoked');
  });

  test('logout with the access token ends the session: refresh and /auth/me say token_revoked', async () => {
    const { pair } = await signUp(t);
    const out = await t.call('POST', '/auth/logout', { token: pair.access_token });
    assert.equal(out.status, 204);
    assert.equal((await t.call('POST', '/auth/refresh', { token: pair.refresh_token })).body.error, 'token_revoked');
    const me = await t.call('GET', '/auth/me', { token: pair.access_token });
    assert.equal(me.status, 401);
    assert.equal(me.body.error, 'token_revoked');
    assert.equal(me.headers.get('www-authenticate'), BEARER_INVALID);
  });

  test('logout with the refresh token ends the session too', async () => {
    const { pair } = await signUp(t);
    assert.equal((await t.call('POST', '/auth/logout', { token: pair.refresh_token })).status, 204);
    assert.equal((await t.call('GET', '/auth/me', { token: pair.access_token })).body.error, 'token_revoked');
    // Without any token it is invalid_token, and changes nothing.
    const none = await t.call('POST', '/auth/logout');
    assert.equal(none.status, 401);
    assert.equal(none.body.error, 'invalid_token');
  });

  test('logout-all ends every session of the user and no one else’s', async () => {
    const a = await signUp(t);
    const second = await t.call('POST', '/auth/login', { body: { username: a.username, password: a.password } });
    const other = await signUp(t);
    assert.equal((await t.call('POST', '/auth/logout-all', { token: a.pair.access_token })).status, 204);
    assert.equal((await t.call('POST', '/auth/refresh', { token: a.pair.refresh_token })).body.error, 'token_revoked');
    assert.equal((await t.call('POST', '/auth/refresh', { token: second.body.refresh_token })).body.error, 'token_revoked');
    assert.equal((await t.call('GET', '/auth/me', { token: second.body.access_token })).body.error, 'token_revoked');
    assert.equal((await t.call('GET', '/auth/me', { token: other.pair.access_token })).status, 200);
  });

  test('sessions: list mine with `current`, delete one, and someone else’s is not_found', async () => {
    const a = await signUp(t);
    const second = await t.call('POST', '/auth/login', {
      body: { username: a.username, password: a.password },
      headers: { 'user-agent': 'second-device' },
    });
    const list = await t.call('GET', '/auth/sessions', { token: a.pair.access_token });
    assert.equal(list.status, 200);
    assert.equal(list.body.sessions.length, 2);
    const mine = list.body.sessions.find((s: { current: boolean }) => s.current);
    assert.equal(mine.id, a.pair.session_id);
    for (const s of list.body.sessions) {
      assert.deepEqual(Object.keys(s).sort(), ['created_at', 'current', 'dpop_bound', 'expires_at', 'id', 'ip', 'last_used_at', 'user_agent']);
    }
    assert.ok(list.body.sessions.some((s: { user_agent: string }) => s.user_agent === 'second-device'));

    const other = await signUp(t);
    const foreign = await t.call('DELETE', `/auth/sessions/${other.pair.session_id}`, { token: a.pair.access_token });
    assert.equal(foreign.status, 404);
    assert.equal(foreign.body.error, 'not_found');
    assert.equal((await t.call('GET', '/auth/me', { token: other.pair.access_token })).status, 200, 'untouched');
    assert.equal((await t.call('DELETE', '/auth/sessions/not-a-uuid', { token: a.pair.access_token })).status, 404);

    const del = await t.call('DELETE', `/auth/sessions/${second.body.session_id}`, { token: a.pair.access_token });
    assert.equal(del.status, 204);
    assert.equal((await t.call('POST', '/auth/refresh', { token: second.body.refresh_token })).body.error, 'token_revoked');
    const after = await t.call('GET', '/auth/sessions', { token: a.pair.access_token });
    assert.deepEqual(after.body.sessions.map((s: { id: string }) => s.id), [a.pair.session_id]);
  });

  test('changing the password revokes every other session and keeps this one', async () => {
    const a = await signUp(t);
    const second = await t.call('POST', '/auth/login', { body: { username: a.username, password: a.password } });
    const wrong = await t.call('POST', '/auth/password', {
      token: a.pair.access_token,
      body: { current_password: 'not the password', new_password: 'a brand new passphrase' },
    });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error, 'invalid_credentials');
    const weak = await t.call('POST', '/auth/password', { token: a.pair.access_token, body: { current_password: a.password, new_password: 'short' } });
    assert.equal(weak.status, 400);
    assert.equal(weak.body.error, 'weak_password');
    assert.equal((await t.call('GET', '/auth/me', { token: second.body.access_token })).status, 200, 'failed attempts changed nothing');

    const ok = await t.call('POST', '/auth/password', {
      token: a.pair.access_token,
      body: { current_password: a.password, new_password: 'a brand new passphrase' },
    });
    assert.equal(ok.status, 204);
    assert.equal((await t.call('GET', '/auth/me', { token: second.body.access_token })).body.error, 'token_revoked');
    assert.equal((await t.call('POST', '/auth/refresh', { token: second.body.refresh_token })).body.error, 'token_revoked');
    assert.equal((await t.call('GET', '/auth/me', { token: a.pair.access_token })).status, 200);
    const oldPw = await t.call('POST', '/auth/login', { body: { username: a.username, password: a.password } });
    assert.equal(oldPw.body.error, 'invalid_credentials');
    const newPw = await t.call('POST', '/auth/login', { body: { username: a.username, password: 'a brand new passphrase' } });
    assert.equal(newPw.status, 200);
  });

  test('the audit log records the security events of the caller, newest first, without secrets', async () => {
    const a = await signUp(t);
    await t.call('POST', '/auth/login', { body: { username: a.username, password: 'wrong password!' } });
    await t.call('POST', '/auth/refresh', { token: a.pair.refresh_token });
    const res = await t.call('GET', '/auth/audit?limit=10', { token: a.pair.access_token });
    assert.equal(res.status, 200);
    assert.deepEqual(
      res.body.events.map((e: { event: string }) => e.event),
      ['token.refreshed', 'login.failed', 'login.succeeded', 'user.registered'],
    );
    const text = JSON.stringify(res.body);
    assert.ok(!text.includes(a.password) && !text.includes(a.pair.refresh_token) && !text.includes('argon2'));
    const page = await t.call('GET', '/auth/audit?limit=2', { token: a.pair.access_token });
    assert.equal(page.body.events.length, 2);
    const next = await t.call('GET', `/auth/audit?limit=2&before=${page.body.next}`, { token: a.pair.access_token });
    assert.deepEqual(next.body.events.map((e: { event: string }) => e.event), ['login.succeeded', 'user.registered']);
  });
});
