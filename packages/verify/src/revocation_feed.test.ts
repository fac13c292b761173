import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { test } from 'node:test';
import { RevocationFeed } from './revocation_feed.js';

/**
 * A feed server that misbehaves on purpose (the real one is in the e2e tests): each
 * request is answered by the next handler of the script, the last one repeating.
 */
async function scriptedFeed(handlers: ((req: IncomingMessage, res: ServerResponse) => void)[]): Promise<{ url: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const open = new Set<ServerResponse>();
  const server: Server = createServer((req, res) => {
    requests.push(`${req.headers.accept} ${req.url}`);
    open.add(res);
    res.once('close', () => open.delete(res));
    handlers[Math.min(requests.length - 1, handlers.length - 1)]!(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}/auth/revocations`,
    requests,
    close: async () => {
      for (const res of open) res.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function sse(res: ServerResponse, events: string[]): void {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write(events.join(''));
}

const revoked = (id: string, sessionId: string, rememberUntil: string) =>
  `event: revoked\nid: ${id}\ndata: ${JSON.stringify({ session_id: sessionId, revoked_at: '2030-01-01T12:00:00.000Z', remember_until: rememberUntil })}\n\n`;
const heartbeat = (id: string) => `event: heartbeat\nid: ${id}\ndata: {}\n\n`;

function until(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const started = Date.now();
  return new Promise((resolve) => {
    const tick = () => {
      if (check()) return resolve(true);
      if (Date.now() - started > timeoutMs) return resolve(false);
      setTimeout(tick, 20);
    };
    tick();
  });
}

test('a stream that goes silent without closing is dropped and reconnected from its cursor before the verifier goes stale', async () => {
  const sessionId = randomUUID();
  const feed = await scriptedFeed([
    (_req, res) => sse(res, [heartbeat('e.5')]), // then silence, the socket left open
    (_req, res) => sse(res, [revoked('e.6', sessionId, '2030-01-01T12:15:00.000Z'), heartbeat('e.6')]),
  ]);
  const now = Date.UTC(2030, 0, 1, 12, 0, 1);
  const verifier = new RevocationFeed({ url: feed.url, fetch, now: () => now, maxStaleness: 7.5, stream: true, pollIntervalMs: 1000 });
  try {
    verifier.start();
    await verifier.ready();
    const started = Date.now();
    assert.ok(await until(() => verifier.isRevoked(sessionId), 8000), 'reconnected and learned the revocation');
    const took = Date.now() - started;
    assert.ok(took >= 4500 && took < 7000, `reconnected after ${took} ms (two thirds of maxStaleness, at least 5 s)`);
    assert.match(feed.requests[1]!, /since=e\.5/, 'resumed from the cursor of the heartbeat');
  } finally {
    verifier.close();
    await feed.close();
  }
});

test('a revocation whose remember_until cannot be read is remembered for a day, then pruned', async () => {
  const sessionId = randomUUID();
  let now = Date.UTC(2030, 0, 1, 12, 0, 0);
  const feed = await scriptedFeed([
    (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ revocations: [{ session_id: sessionId, revoked_at: 'x', remember_until: 'not a date' }], cursor: 'e.1', more: false }));
    },
    (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ revocations: [], cursor: 'e.1', more: false }));
    },
  ]);
  const verifier = new RevocationFeed({ url: feed.url, fetch, now: () => now, maxStaleness: 30, stream: false, pollIntervalMs: 100 });
  try {
    verifier.start();
    await verifier.ready();
    assert.equal(verifier.isRevoked(sessionId), true, 'a bad date never drops a revocation');
    now += 23 * 3600 * 1000;
    assert.equal(verifier.isRevoked(sessionId), true);
    now += 2 * 3600 * 1000;
    assert.ok(await until(() => verifier.size === 0, 2000), 'pruned by the next page, without being asked about');
  } finally {
    verifier.close();
    await feed.close();
  }
});

test('paging follows more: true to the end before it counts as read, and a refused cursor starts over', async () => {
  const a = randomUUID();
  const b = randomUUID();
  const page = (res: ServerResponse, status: number, body: unknown) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };
  const feed = await scriptedFeed([
    (_req, res) => page(res, 200, { revocations: [{ session_id: a, revoked_at: 'x', remember_until: '2030-01-01T12:15:00.000Z' }], cursor: 'e.1', more: true }),
    (_req, res) => page(res, 200, { revocations: [{ session_id: b, revoked_at: 'x', remember_until: '2030-01-01T12:15:00.000Z' }], cursor: 'e.2', more: false }),
    (_req, res) => page(res, 400, { error: 'invalid_request', message: 'The cursor belongs to another database: start again without one.' }),
    (_req, res) => page(res, 200, { revocations: [], cursor: 'f.0', more: false }),
  ]);
  const verifier = new RevocationFeed({ url: feed.url, fetch, now: () => Date.UTC(2030, 0, 1, 12), maxStaleness: 30, stream: false, pollIntervalMs: 100 });
  try {
    verifier.start();
    await verifier.ready();
    assert.ok(verifier.isRevoked(a) && verifier.isRevoked(b), 'both pages were read before ready');
    assert.ok(await until(() => feed.requests.length >= 5, 3000));
    assert.deepEqual(
      feed.requests.slice(0, 5).map((r) => r.replace(/^\S+ \/auth\/revocations/, '')),
      ['', '?since=e.1', '?since=e.2', '', '?since=f.0'],
    );
  } finally {
    verifier.close();
    await feed.close();
  }
});
