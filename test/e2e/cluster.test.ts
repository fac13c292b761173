import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { runAdminOperation } from '@tessera/server';
import { accessTokenHash } from '@tessera/verify';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { createDatabase, type PostgresServer, startPostgres } from '../support/postgres_server.js';
import { type RedisServer, startRedis } from '../support/redis_server.js';
import { signUp, startTestServer, type TestServer } from '../support/test_server.js';

/** Waits for the first `revoked` SSE event for `sessionId` on `url`, resolving to when it arrived. */
async function watchFeed(url: string): Promise<{ waitFor(sessionId: string): Promise<number>; close(): void }> {
  const abort = new AbortController();
  const response = await fetch(`${url}/auth/revocations`, { headers: { accept: 'text/event-stream' }, signal: abort.signal });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  const seen = new Map<string, number>();
  const waiters = new Map<string, (at: number) => void>();
  void (async () => {
    let buffer = '';
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return;
        buffer += value;
        for (const match of buffer.matchAll(/"session_id":"([^"]+)"/g)) {
          if (!seen.has(match[1]!)) {
            seen.set(match[1]!, Date.now());
            waiters.get(match[1]!)?.(Date.now());
          }
        }
      }
    } catch {}
  })();
  return {
    waitFor: (sessionId) => {
      const at = seen.get(sessionId);
      return at !== undefined ? Promise.resolve(at) : new Promise((resolve) => waiters.set(sessionId, resolve));
    },
    close: () => abort.abort(),
  };
}

describe('two instances on one PostgreSQL and one Redis behave as one', () => {
  let postgres: PostgresServer;
  let redis: RedisServer;
  let a: TestServer;
  let b: TestServer;
  const issuer = 'http://localhost:4000';

  before(async () => {
    [postgres, redis] = await Promise.all([startPostgres(), startRedis()]);
    const databaseUrl = await createDatabase(postgres.url, 'cluster');
    // Database polling and periodic key reloads are slowed right down, so what is
    // fast here is fast because of Redis.
    const options = { databaseUrl, redisUrl: redis.url, issuer, rateLimit: 'ip=1000/1m,user=3/1m', revocationPoll: 30, keyReloadInterval: 0, feedHeartbeat: 1 };
    [a, b] = await Promise.all([startTestServer(options), startTestServer(options)]);
    // The instances must agree on time for the shared windows: give them one clock.
    b.clock.advance((a.clock.now() - b.clock.now()) / 1000);
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await Promise.all([postgres?.stop(), redis?.stop()]);
  });

  test('rate limits are shared: failures on A and B add up', async () => {
    const { username, password } = await signUp(a);
    await a.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } });
    await b.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } });
    await a.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } });
    const limited = await b.call('POST', '/auth/login', { body: { username, password } });
    assert.equal(limited.status, 429);
    assert.equal(limited.body.error, 'rate_limited');
  });

  test('a logout on A is in B’s revocation feed within a second, and refused on B at once', async () => {
    const feed = await watchFeed(b.url);
    try {
      const { pair } = await signUp(a);
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      await a.call('POST', '/auth/logout', { token: pair.access_token });
      const arrived = await Promise.race([feed.waitFor(pair.session_id), new Promise<number>((r) => setTimeout(() => r(Number.NaN), 3000))]);
      assert.ok(arrived - started < 1000, `arrived after ${arrived - started} ms`);
      assert.equal((await b.call('GET', '/auth/me', { token: pair.access_token })).body.error, 'token_revoked');
    } finally {
      feed.close();
    }
  });

  test('a DPoP proof used on A is refused on B (the replay cache is shared through Redis), and the owner goes on', async () => {
    const user = await signUp(a);
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = await exportJWK(publicKey);
    const proof = (method: string, path: string, extra: Record<string, unknown> = {}) =>
      new SignJWT({ jti: crypto.randomUUID(), htm: method, htu: `${issuer}${path}`, iat: Math.floor(a.clock.now() / 1000), ...extra })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
        .sign(privateKey);
    const login = await a.call('POST', '/auth/login', { headers: { dpop: await proof('POST', '/auth/login') }, body: { username: user.username, password: user.password } });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    assert.equal(login.body.token_type, 'DPoP');
    const token = login.body.access_token as string;

    const me = await proof('GET', '/auth/me', { ath: await accessTokenHash(token) });
    const headers = { authorization: `DPoP ${token}`, dpop: me };
    assert.equal((await a.call('GET', '/auth/me', { headers })).status, 200);
    const replayed = await b.call('GET', '/auth/me', { headers });
    assert.equal(replayed.status, 401);
    assert.equal(replayed.body.error, 'invalid_dpop_proof');

    const refreshProof = await proof('POST', '/auth/refresh');
    const first = await a.call('POST', '/auth/refresh', { token: login.body.refresh_token, headers: { dpop: refreshProof } });
    assert.equal(first.status, 200, JSON.stringify(first.body));
    // A thief with the new refresh token and the proof it saw go by, at the other instance.
    const stolen = await b.call('POST', '/auth/refresh', { token: first.body.refresh_token, headers: { dpop: refreshProof } });
    assert.equal(stolen.status, 401);
    assert.equal(stolen.body.error, 'invalid_dpop_proof');
    const owner = await b.call('POST', '/auth/refresh', { token: first.body.refresh_token, headers: { dpop: await proof('POST', '/auth/refresh') } });
    assert.equal(owner.status, 200, 'the refused replay changed nothing');
  });

  test('a key rotated through A is published by B at once', async () => {
    const ctx = a.server.context;
    // What the admin channel does for `tessera keys rotate`.
    const host = { ...ctx, onKeysChanged: ctx.announceKeysChanged };
    const rotated = await runAdminOperation(host, { op: 'keys.rotate' });
    let seen = false;
    for (let i = 0; i < 20 && !seen; i++) {
      const keys = (await b.call('GET', '/.well-known/jwks.json')).body.keys as { kid: string }[];
      seen = keys.some((k) => k.kid === rotated.kid);
      if (!seen) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(seen, 'B reloaded its key ring on the Redis message');
  });

  test('Redis down: both keep serving (per-instance limits); Redis back: shared again', async () => {
    await redis.stop();
    const { username, password } = await signUp(a);
    assert.equal((await b.call('POST', '/auth/login', { body: { username, password } })).status, 200);
    assert.equal((await a.call('GET', '/readyz')).status, 200, 'Redis is not a reason to be unready');
    const redisUp = async () => /^tessera_redis_up (\d)$/m.exec(await (await fetch(`${a.url}/metrics`)).text())?.[1];
    const until = async (value: string) => {
      for (let i = 0; i < 40 && (await redisUp()) !== value; i++) await new Promise((resolve) => setTimeout(resolve, 50));
      return redisUp();
    };
    assert.equal(await until('0'), '0', 'the metrics say Redis is down, for an alert');
    await redis.start();
    await new Promise((resolve) => setTimeout(resolve, 2500)); // ioredis reconnects by itself
    assert.equal(await until('1'), '1');
    await a.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } });
    await b.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } });
    await a.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } });
    assert.equal((await b.call('POST', '/auth/login', { body: { username, password } })).status, 429);
  });
});
