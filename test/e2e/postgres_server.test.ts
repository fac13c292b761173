import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { refreshJtiHash } from '@tessera/server';
import { decodeJwt } from 'jose';
import { createDatabase, type PostgresServer, startPostgres } from '../support/postgres_server.js';
import { signUp, startTestServer, type TestServer } from '../support/test_server.js';

/** The auth server on a real PostgreSQL 15 through `pg`: the same schema and behaviour as PGlite. */
describe('auth server on a real PostgreSQL', () => {
  let postgres: PostgresServer;
  let databaseUrl: string;
  const issuer = 'http://localhost:4000';
  let a: TestServer;
  let b: TestServer;

  before(async () => {
    postgres = await startPostgres();
    databaseUrl = await createDatabase(postgres.url, 'e2e');
    // Two instances started at once: migrations and the first key are serialised by advisory locks.
    [a, b] = await Promise.all([startTestServer({ databaseUrl, issuer }), startTestServer({ databaseUrl, issuer })]);
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await postgres?.stop();
  });

  test('both instances publish the same single key', async () => {
    const ka = (await a.call('GET', '/.well-known/jwks.json')).body.keys;
    const kb = (await b.call('GET', '/.well-known/jwks.json')).body.keys;
    assert.equal(ka.length, 1);
    assert.deepEqual(ka, kb);
  });

  test('a user registered on A logs in on B; a token from B works on A', async () => {
    const { username, password } = await signUp(a);
    const login = await b.call('POST', '/auth/login', { body: { username, password } });
    assert.equal(login.status, 200);
    assert.equal((await a.call('GET', '/auth/me', { token: login.body.access_token })).status, 200);
  });

  test('20 parallel refreshes of one token spread over both instances make one successor', async () => {
    const { pair } = await signUp(a);
    const results = await Promise.all(
      Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).call('POST', '/auth/refresh', { token: pair.refresh_token })),
    );
    assert.deepEqual([...new Set(results.map((r) => r.status))], [200]);
    assert.equal(new Set(results.map((r) => decodeJwt(r.body.refresh_token).jti)).size, 1);
    const state = await a.server.context.store.sessions.refreshState(pair.session_id);
    assert.equal(state?.previousHash, refreshJtiHash(decodeJwt(pair.refresh_token).jti!), 'rotated exactly once');
  });

  test('reuse after the grace window on one instance revokes the session on the other', async () => {
    const { pair } = await signUp(a);
    const next = await a.call('POST', '/auth/refresh', { token: pair.refresh_token });
    a.clock.advance(11);
    b.clock.advance(11);
    const theft = await b.call('POST', '/auth/refresh', { token: pair.refresh_token });
    assert.equal(theft.body.error, 'token_reused');
    assert.equal((await a.call('POST', '/auth/refresh', { token: next.body.refresh_token })).body.error, 'token_revoked');
  });

  test('a logout on A is refused on B at once', async () => {
    const { pair } = await signUp(a);
    assert.equal((await a.call('POST', '/auth/logout', { token: pair.access_token })).status, 204);
    assert.equal((await b.call('GET', '/auth/me', { token: pair.access_token })).body.error, 'token_revoked');
  });

  test('readyz answers 200 while PostgreSQL does; when it is down: readyz 503, healthz 200, 503 unavailable', async () => {
    const { username, password } = await signUp(a);
    assert.equal((await a.call('GET', '/readyz')).status, 200);
    await postgres.stop();
    const ready = await a.call('GET', '/readyz');
    assert.equal(ready.status, 503);
    assert.equal(ready.body.error, 'unavailable');
    assert.equal((await a.call('GET', '/healthz')).status, 200);
    const login = await a.call('POST', '/auth/login', { body: { username, password } });
    assert.equal(login.status, 503);
    assert.deepEqual(Object.keys(login.body).sort(), ['error', 'message']);
    assert.equal(login.body.error, 'unavailable');
    assert.ok(Number(login.headers.get('retry-after')) > 0);
  });
});
