import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import type { TesseraError } from '@tessera/protocol';
import { createVerifier, type RevocationOptions, type Verifier } from '@tessera/verify';
import { addSessions, pageAll, readEvents, revokedIds } from '../support/revocation_feed.js';
import { signUp, startTestServer, type TestServer } from '../support/test_server.js';

const PAGE = 1000;
const ISSUER = 'http://localhost:4000';

/** Resolves to the ms it took until `verify(token)` was refused as revoked, polling every 10 ms up to `limitMs`. */
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

function verifierFor(t: TestServer, revocation: RevocationOptions, fetchImpl?: typeof fetch): Verifier {
  return createVerifier({
    issuer: ISSUER,
    audience: 'tessera-api',
    jwksUri: `${t.url}/.well-known/jwks.json`,
    revocation: { url: `${t.url}/auth/revocations`, ...revocation },
    clock: t.clock.now,
    fetch: fetchImpl,
  });
}

async function metric(t: TestServer, name: string): Promise<number> {
  const text = await (await fetch(`${t.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
}

/** Opens an event stream and leaves it open (read nothing); returns its status and a way to close it. */
async function holdStream(url: string, headers: Record<string, string> = {}) {
  const abort = new AbortController();
  const response = await fetch(`${url}/auth/revocations`, { headers: { accept: 'text/event-stream', ...headers }, signal: abort.signal });
  return { status: response.status, response, close: () => abort.abort() };
}

describe('the revocation feed past its page size: every revocation, exactly once', () => {
  let t: TestServer;
  let oldest: { access_token: string; session_id: string };
  let middle: { access_token: string; session_id: string };
  let newest: { access_token: string; session_id: string };
  let revoked: string[];

  before(async () => {
    t = await startTestServer({ issuer: ISSUER, feedHeartbeat: 1 });
    // PAGE × 3 + 1 revocations: the oldest alone, then 2,999 in one logout-all (one
    // transaction, one millisecond), then the newest.
    const a = await signUp(t);
    oldest = a.pair;
    assert.equal((await t.call('POST', '/auth/logout', { token: oldest.access_token })).status, 204);
    const b = await signUp(t);
    middle = b.pair;
    await addSessions(t, b.userId, PAGE * 3 - 2);
    assert.equal((await t.call('POST', '/auth/logout-all', { token: middle.access_token })).status, 204);
    const c = await signUp(t);
    newest = c.pair;
    assert.equal((await t.call('POST', '/auth/logout', { token: newest.access_token })).status, 204);
    const { rows } = await t.server.context.store.db.query<{ id: string }>('SELECT session_id AS id FROM revocation_feed ORDER BY position');
    revoked = rows.map((r) => r.id);
    assert.equal(revoked.length, PAGE * 3 + 1);
    const { rows: shared } = await t.server.context.store.db.query<{ n: string }>('SELECT count(*)::text AS n FROM sessions GROUP BY revoked_at ORDER BY 1 DESC LIMIT 1');
    assert.equal(shared[0]!.n, String(revoked.length), 'they share one timestamp');
  });
  after(() => t.close());

  test('JSON: paging until more is false gives every row once, oldest first, in pages of the page size', async () => {
    const pages: { count: number; more: boolean }[] = [];
    let cursor: string | undefined;
    const seen: string[] = [];
    do {
      const res = await t.call('GET', `/auth/revocations${cursor ? `?since=${cursor}` : ''}`);
      assert.equal(res.status, 200);
      assert.deepEqual(Object.keys(res.body).sort(), ['cursor', 'more', 'revocations']);
      pages.push({ count: res.body.revocations.length, more: res.body.more });
      seen.push(...res.body.revocations.map((r: { session_id: string }) => r.session_id));
      cursor = res.body.cursor;
    } while (pages.at(-1)!.more);
    assert.deepEqual(pages, [
      { count: PAGE, more: true },
      { count: PAGE, more: true },
      { count: PAGE, more: true },
      { count: 1, more: false },
    ]);
    assert.deepEqual(seen, revoked, 'every revocation exactly once, in commit order');
    const again = await t.call('GET', `/auth/revocations?since=${cursor}`);
    assert.deepEqual([again.body.revocations, again.body.more, again.body.cursor], [[], false, cursor]);
  });

  test('SSE: the backlog streams, and Last-Event-ID resumes after a drop without a gap or a repeat', async () => {
    const first = await fetch(`${t.url}/auth/revocations`, { headers: { accept: 'text/event-stream' } });
    const part = await readEvents(first, (events) => events.length >= 1500, 10_000);
    assert.equal(part.length, 1500);
    assert.ok(part.every((e) => e.event === 'revoked' && /^[0-9a-f]{12}\.\d+$/.test(e.id ?? '')));
    const resumed = await fetch(`${t.url}/auth/revocations`, { headers: { accept: 'text/event-stream', 'last-event-id': part.at(-1)!.id! } });
    const rest = await readEvents(resumed, (events) => events.some((e) => e.event === 'heartbeat'), 10_000);
    assert.equal(rest.at(-1)!.event, 'heartbeat', 'a heartbeat marks the end of the backlog');
    assert.deepEqual([...revokedIds(part), ...revokedIds(rest)], revoked);
  });

  test('a verifier started after the backlog refuses the oldest, a middle and the newest, streaming or paging', async () => {
    for (const stream of [true, false]) {
      const verifier = verifierFor(t, { stream });
      try {
        await verifier.prefetch();
        assert.ok(verifier.revocationStatus()!.remembered >= revoked.length, 'prefetch resolved after the whole backlog');
        for (const pair of [oldest, middle, newest]) {
          await assert.rejects(verifier.verify(pair.access_token), (e: TesseraError) => e.code === 'token_revoked', `stream: ${stream}`);
        }
        const { pair: live } = await signUp(t);
        await verifier.verify(live.access_token);
      } finally {
        verifier.close();
      }
    }
  });

  test('a malformed, foreign or impossible cursor is 400 invalid_request, never a 5xx', async () => {
    const { cursor } = await pageAll(t.url);
    const [epoch, position] = cursor.split('.');
    const bad = ['abc', '999999999999999', '-1', `${epoch}.`, `${epoch}.1.2`, `${epoch}.${Number(position) + 1000}`, `000000000000.1`, 'x'.repeat(64), `${epoch}.1e3`];
    for (const since of bad) {
      const res = await t.call('GET', `/auth/revocations?since=${encodeURIComponent(since)}`);
      assert.equal(res.status, 400, since);
      assert.equal(res.body.error, 'invalid_request', since);
    }
    assert.equal((await t.call('GET', `/auth/revocations?since=${'1'.repeat(65)}`)).status, 400);
    const stream = await fetch(`${t.url}/auth/revocations`, { headers: { accept: 'text/event-stream', 'last-event-id': `${epoch}.99999999` } });
    assert.equal(stream.status, 400);
    assert.equal(((await stream.json()) as { error: string }).error, 'invalid_request');
  });
});

describe('no client can blind a verifier', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ issuer: ISSUER, feedHeartbeat: 1 });
  });
  after(() => t.close());

  test('past the per-address cap a stream is 429; a new verifier from that address pages the JSON feed and learns a logout within its bound', async () => {
    const held = [];
    try {
      for (let i = 0; i < 32; i++) held.push(await holdStream(t.url));
      assert.ok(held.every((s) => s.status === 200));
      const refused = await holdStream(t.url);
      assert.equal(refused.status, 429);
      assert.equal(refused.response.headers.get('retry-after'), '30');
      assert.equal(((await refused.response.json()) as { error: string }).error, 'rate_limited');
      assert.equal(await metric(t, 'tessera_feed_streams'), 32);

      const verifier = verifierFor(t, {});
      try {
        await verifier.prefetch();
        assert.equal(verifier.revocationStatus()!.mode, 'poll');
        const { pair } = await signUp(t);
        await verifier.verify(pair.access_token);
        await t.call('POST', '/auth/logout', { token: pair.access_token });
        const took = await refusedWithin(verifier, pair.access_token, 3000);
        assert.ok(took < 2000, `refused after ${took} ms (poll interval 1 s)`);
        assert.equal(verifier.revocationStatus()!.stale, false);
      } finally {
        verifier.close();
      }
    } finally {
      for (const s of held) s.close();
    }
  });

  test('past the instance cap a stream is 503, and verifiers still learn logouts by paging', async () => {
    const capped = await startTestServer({ issuer: ISSUER, feedHeartbeat: 1, feedMaxStreams: 3, trustProxy: true });
    const held = [];
    try {
      for (let i = 1; i <= 3; i++) held.push(await holdStream(capped.url, { 'x-forwarded-for': `198.51.100.${i}` }));
      const refused = await holdStream(capped.url, { 'x-forwarded-for': '198.51.100.4' });
      assert.equal(refused.status, 503);
      assert.equal(((await refused.response.json()) as { error: string }).error, 'unavailable');
      const fromElsewhere: typeof fetch = (input, init) => fetch(input, { ...init, headers: { ...(init?.headers as Record<string, string>), 'x-forwarded-for': '198.51.100.5' } });
      const verifier = verifierFor(capped, {}, fromElsewhere);
      try {
        await verifier.prefetch();
        assert.equal(verifier.revocationStatus()!.mode, 'poll');
        const { pair } = await signUp(capped);
        await capped.call('POST', '/auth/logout', { token: pair.access_token });
        const took = await refusedWithin(verifier, pair.access_token, 3000);
        assert.ok(took < 2000, `refused after ${took} ms`);
      } finally {
        verifier.close();
      }
      // The one refused above, and the verifier's own first try.
      assert.equal(await metric(capped, 'tessera_feed_streams_refused_total{scope="instance"}'), 2);
    } finally {
      for (const s of held) s.close();
      await capped.close();
    }
  });

  test('a stream that never reads is dropped, and what the server holds for it stays bounded', async () => {
    const slow = await startTestServer({ issuer: ISSUER, feedSlowConsumerMs: 1000 });
    // More than the kernel's socket buffers hold (up to 4 MiB on Linux): 30,000 events are about 5 MiB.
    const { userId, pair } = await signUp(slow);
    await addSessions(slow, userId, 30_000);
    await slow.call('POST', '/auth/logout-all', { token: pair.access_token });
    // A client with a 4 KiB receive buffer that sends its request and then reads nothing.
    const client = spawn('python3', [
      '-c',
      `import socket, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
s.connect(('127.0.0.1', ${new URL(slow.url).port}))
s.sendall(b'GET /auth/revocations HTTP/1.1\\r\\nHost: localhost\\r\\nAccept: text/event-stream\\r\\n\\r\\n')
time.sleep(60)`,
    ]);
    try {
      let buffered = 0;
      let dropped = 0;
      for (let i = 0; i < 150 && dropped === 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        buffered = Math.max(buffered, await metric(slow, 'tessera_feed_buffered_bytes'));
        dropped = await metric(slow, 'tessera_feed_streams_dropped_total{reason="slow_consumer"}');
      }
      assert.equal(dropped, 1, 'the stream was dropped');
      assert.equal(await metric(slow, 'tessera_feed_streams'), 0);
      assert.ok(buffered > 0, 'the stream did fill up');
      assert.ok(buffered <= 64 * 1024, `at most one write beyond the socket's buffer was held: ${buffered} bytes`);
    } finally {
      client.kill();
      await slow.close();
    }
  });
});

describe('--feed-secret', () => {
  let t: TestServer;
  const secret = 'a-feed-secret-of-32-characters!!';
  before(async () => {
    t = await startTestServer({ issuer: ISSUER, feedHeartbeat: 1, feedSecret: secret });
  });
  after(() => t.close());

  test('strangers get 401 invalid_token, for JSON and streams; the secret opens it', async () => {
    for (const authorization of [undefined, 'Bearer wrong-secret-but-long-enough', `Basic ${secret}`, `Bearer ${secret}x`, `Bearer ${secret.slice(0, -1)}`]) {
      for (const accept of ['application/json', 'text/event-stream']) {
        const res = await fetch(`${t.url}/auth/revocations`, { headers: { accept, ...(authorization ? { authorization } : {}) } });
        assert.equal(res.status, 401, `${authorization} ${accept}`);
        assert.match(res.headers.get('www-authenticate') ?? '', /error="invalid_token"/);
        assert.equal(((await res.json()) as { error: string }).error, 'invalid_token');
      }
    }
    const ok = await t.call('GET', '/auth/revocations', { headers: { authorization: `Bearer ${secret}` } });
    assert.equal(ok.status, 200);
  });

  test('a verifier given the secret learns a logout at once; one without it fails closed', async () => {
    const withSecret = verifierFor(t, { secret });
    const without = verifierFor(t, { maxStaleness: 30 });
    try {
      await withSecret.prefetch();
      const { pair } = await signUp(t);
      await t.call('POST', '/auth/logout', { token: pair.access_token });
      assert.ok((await refusedWithin(withSecret, pair.access_token, 2000)) < 1000);
      const { pair: other } = await signUp(t);
      t.clock.advance(31);
      await assert.rejects(without.verify(other.access_token), (e: TesseraError) => e.code === 'token_revoked' && /feed is down/.test(e.message));
    } finally {
      withSecret.close();
      without.close();
    }
  });

  test('a secret shorter than 16 characters is refused at start', async () => {
    await assert.rejects(startTestServer({ feedSecret: 'short' }), /feedSecret/);
  });
});

describe('a database that goes back in time (a restore, a failover to a replica that was behind)', () => {
  test('the feed starts over under a new epoch: old cursors are refused, and verifiers learn the revocations that reuse old positions', async () => {
    const t = await startTestServer({ issuer: ISSUER, feedHeartbeat: 1 });
    const verifier = verifierFor(t, {});
    try {
      for (let i = 0; i < 3; i++) {
        const { pair } = await signUp(t);
        await t.call('POST', '/auth/logout', { token: pair.access_token });
      }
      await verifier.prefetch();
      const { cursor } = await pageAll(t.url);
      // What a restored backup taken after the first logout looks like to the feed.
      const db = t.server.context.store.db;
      await db.query('DELETE FROM revocation_feed WHERE position > 1');
      await db.query('UPDATE revocation_counter SET position = 1');
      const reborn = [];
      for (let i = 0; i < 3; i++) {
        const { pair } = await signUp(t);
        await t.call('POST', '/auth/logout', { token: pair.access_token });
        reborn.push(pair);
      }
      for (const pair of reborn) assert.ok((await refusedWithin(verifier, pair.access_token, 3000)) < 3000, 'the verifier learned it');
      const stale = await t.call('GET', `/auth/revocations?since=${cursor}`);
      assert.equal(stale.status, 400, 'a cursor from before the restore is foreign now');
      const fresh = await pageAll(t.url);
      for (const pair of reborn) assert.ok(fresh.rows.some((r) => r.session_id === pair.session_id));
      assert.notEqual(fresh.cursor.split('.')[0], cursor.split('.')[0]);
    } finally {
      verifier.close();
      await t.close();
    }
  });
});
