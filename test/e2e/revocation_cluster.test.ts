import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import type { TesseraError } from '@tessera/protocol';
import { createVerifier, type Verifier } from '@tessera/verify';
import { createDatabase, type PostgresServer, startPostgres } from '../support/postgres_server.js';
import { type RedisServer, startRedis } from '../support/redis_server.js';
import { addSessions, pageAll } from '../support/revocation_feed.js';
import { signUp, startTestServer, type TestServer } from '../support/test_server.js';

const ISSUER = 'http://localhost:4000';

async function refusedWithin(verifier: Verifier, token: string, limitMs: number): Promise<number> {
  const started = Date.now();
  while (Date.now() - started < limitMs) {
    const code = await verifier.verify(token).then(
      () => undefined,
      (e: TesseraError) => e.code,
    );
    if (code === 'token_revoked') return Date.now() - started;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return Number.POSITIVE_INFINITY;
}

describe('two instances on PostgreSQL with Redis stopped: revocations past a large backlog reach every verifier', () => {
  let postgres: PostgresServer;
  let redis: RedisServer;
  let a: TestServer;
  let b: TestServer;

  before(async () => {
    [postgres, redis] = await Promise.all([startPostgres(), startRedis()]);
    const databaseUrl = await createDatabase(postgres.url, 'revocation_cluster');
    // The default database poll (1 s) is the only way B learns of A's revocations once Redis is gone.
    const options = { databaseUrl, redisUrl: redis.url, issuer: ISSUER, feedHeartbeat: 1, keyReloadInterval: 0 };
    [a, b] = await Promise.all([startTestServer(options), startTestServer(options)]);
    b.clock.advance((a.clock.now() - b.clock.now()) / 1000);
    await redis.stop();
  });
  after(async () => {
    await Promise.all([a?.close(), b?.close()]);
    await Promise.all([postgres?.stop(), redis?.stop()]);
  });

  test('a logout on A after 2,500 revocations on A is refused by a verifier following B within its bound', async () => {
    const verifier = createVerifier({
      issuer: ISSUER,
      audience: 'tessera-api',
      jwksUri: `${b.url}/.well-known/jwks.json`,
      revocation: { url: `${b.url}/auth/revocations` },
      clock: b.clock.now,
    });
    try {
      await verifier.prefetch();
      assert.equal(verifier.revocationStatus()!.mode, 'stream');
      const crowd = await signUp(a);
      await addSessions(a, crowd.userId, 2_499);
      assert.equal((await a.call('POST', '/auth/logout-all', { token: crowd.pair.access_token })).status, 204);
      const { pair } = await signUp(a);
      await verifier.verify(pair.access_token);
      assert.equal((await a.call('POST', '/auth/logout', { token: pair.access_token })).status, 204);
      const took = await refusedWithin(verifier, pair.access_token, 5000);
      assert.ok(took < 2500, `refused after ${took} ms (B polls the database every second)`);
      await assert.rejects(verifier.verify(crowd.pair.access_token), (e: TesseraError) => e.code === 'token_revoked');

      // B's JSON feed, paged from the start, has all of A's revocations once each.
      const { rows } = await pageAll(b.url);
      const ids = rows.map((r) => r.session_id);
      assert.equal(new Set(ids).size, ids.length);
      assert.ok(ids.includes(pair.session_id));
      assert.equal(ids.length, 2_501);
    } finally {
      verifier.close();
    }
  });

  test('a cursor from A continues on B (one numbering), and a verifier started on B refuses the oldest and the newest', async () => {
    const first = await a.call('GET', '/auth/revocations');
    assert.equal(first.body.more, true);
    const onB = await b.call('GET', `/auth/revocations?since=${first.body.cursor}`);
    assert.equal(onB.status, 200);
    assert.equal(onB.body.revocations.length, 1000);
    assert.ok(!onB.body.revocations.some((r: { session_id: string }) => r.session_id === first.body.revocations[0].session_id));
    const { pair: newest } = await signUp(b);
    await b.call('POST', '/auth/logout', { token: newest.access_token });
    const oldest = first.body.revocations[0].session_id as string;
    const verifier = createVerifier({
      issuer: ISSUER,
      audience: 'tessera-api',
      jwksUri: `${b.url}/.well-known/jwks.json`,
      revocation: { url: `${b.url}/auth/revocations`, stream: false },
      clock: b.clock.now,
    });
    try {
      await verifier.prefetch();
      await assert.rejects(verifier.verify(newest.access_token), (e: TesseraError) => e.code === 'token_revoked');
      // The oldest revocation is one of the 2,500 sessions ended by the first logout-all.
      const { rows } = await b.server.context.store.db.query<{ user_id: string }>('SELECT user_id FROM sessions WHERE id = $1', [oldest]);
      const crowdUser = rows[0]!.user_id;
      const { rows: crowd } = await b.server.context.store.db.query<{ id: string }>('SELECT f.session_id AS id FROM revocation_feed f JOIN sessions s ON s.id = f.session_id WHERE s.user_id = $1 ORDER BY f.position LIMIT 1', [crowdUser]);
      assert.equal(crowd[0]!.id, oldest);
      assert.equal(verifier.revocationStatus()!.remembered, 2_502);
    } finally {
      verifier.close();
    }
  });
});

describe('an instance cut off from the database stops vouching for its feed', () => {
  test('its JSON feed answers 503 and its streams stop their heartbeats, so verifiers go stale instead of trusting it', async () => {
    const postgres = await startPostgres();
    const t = await startTestServer({ databaseUrl: await createDatabase(postgres.url, 'cutoff'), issuer: ISSUER, feedHeartbeat: 1 });
    try {
      assert.equal((await t.call('GET', '/auth/revocations')).status, 200);
      const abort = new AbortController();
      const stream = await fetch(`${t.url}/auth/revocations`, { headers: { accept: 'text/event-stream' }, signal: abort.signal });
      const reader = stream.body!.pipeThrough(new TextDecoderStream()).getReader();
      let text = '';
      void (async () => {
        try {
          for (;;) {
            const { value, done } = await reader.read();
            if (done) return;
            text += value;
          }
        } catch {}
      })();
      await postgres.pause();
      await new Promise((resolve) => setTimeout(resolve, 4000));
      assert.equal((await t.call('GET', '/auth/revocations')).status, 503);
      const before = (text.match(/event: heartbeat/g) ?? []).length;
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.equal((text.match(/event: heartbeat/g) ?? []).length, before, 'no heartbeat while it cannot read the database');
      await postgres.resume();
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.ok((text.match(/event: heartbeat/g) ?? []).length > before, 'heartbeats again once it can');
      assert.equal((await t.call('GET', '/auth/revocations')).status, 200);
      abort.abort();
    } finally {
      await t.close();
      await postgres.stop();
    }
  });
});
