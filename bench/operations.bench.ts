// Operations figures, in one run on one machine:
//  1. Audit overhead: the audit INSERT that login and refresh write in their transaction,
//     timed against the whole store transaction it is part of (embedded PGlite), and
//     login/refresh HTTP throughput of the real server for scale.
//  2. Revocation fan-out: N SSE subscribers on one server; time from the logout's 204
//     to the moment the last subscriber has the event.
// Run: node --conditions=tessera-source --import tsx bench/operations.bench.ts
import { randomUUID } from 'node:crypto';
import { createAuthServer, decideRotation, migrate, openPgliteDatabase, Store } from '@tessera/server';
import { median, percentileOf } from './lib/percentiles.js';

const p99 = (xs: number[]) => percentileOf(xs, 99);

async function auditOverhead() {
  const db = await openPgliteDatabase(undefined);
  await migrate(db);
  const store = new Store(db);
  const client = { ip: '127.0.0.1', userAgent: 'bench' };
  const user = await store.users.create({ id: randomUUID(), username: 'bench', skeleton: 'bench', passwordHash: 'h', roles: [], now: new Date() }, client);
  const n = 2000;
  const session: number[] = [];
  const rotate: number[] = [];
  const audit: number[] = [];
  for (let i = 0; i < n; i++) {
    const id = randomUUID();
    const first = { jtiHash: randomUUID(), issuedAt: new Date(), expiresAt: new Date(Date.now() + 86_400_000) };
    let t = performance.now();
    await store.sessions.open({ session: { id, user, client }, token: first, single: false, now: new Date() });
    session.push(performance.now() - t);
    t = performance.now();
    await store.sessions.rotate({ sessionId: id, jtiHash: first.jtiHash, successor: { ...first, jtiHash: randomUUID() }, now: new Date(), graceMs: 10_000, client, decide: decideRotation });
    rotate.push(performance.now() - t);
    t = performance.now();
    await store.audit.append(new Date(), [{ event: 'token.refreshed', outcome: 'success', userId: user.id, username: user.username, sessionId: id, ...client }]);
    audit.push(performance.now() - t);
  }
  await store.close();
  return { session: median(session), rotate: median(rotate), audit: median(audit) };
}

async function fanOut(subscribers: number) {
  const server = await createAuthServer({ port: 0, dataDir: 'memory://', log: false, rateLimit: 'ip=1000000/1m,user=1000000/1m', feedStreamsPerAddress: 10_000 });
  const url = await server.listen();
  const post = (path: string, body?: unknown, token?: string) =>
    fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: body ? JSON.stringify(body) : undefined });
  await post('/auth/register', { username: 'fan', password: 'long enough pw' });
  const latencies: number[] = [];
  const controllers: AbortController[] = [];
  const waits: ((sid: string) => Promise<number>)[] = [];
  for (let i = 0; i < subscribers; i++) {
    const controller = new AbortController();
    controllers.push(controller);
    const response = await fetch(`${url}/auth/revocations`, { headers: { accept: 'text/event-stream' }, signal: controller.signal });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    const seen = new Map<string, number>();
    const pending = new Map<string, (t: number) => void>();
    void (async () => {
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          for (const m of value.matchAll(/"session_id":"([^"]+)"/g)) {
            seen.set(m[1]!, performance.now());
            pending.get(m[1]!)?.(performance.now());
          }
        }
      } catch {}
    })();
    waits.push((sid) => (seen.has(sid) ? Promise.resolve(seen.get(sid)!) : new Promise((r) => pending.set(sid, r))));
  }
  for (let round = 0; round < 20; round++) {
    const pair = (await (await post('/auth/login', { username: 'fan', password: 'long enough pw' })).json()) as { access_token: string; session_id: string };
    const t0 = performance.now();
    await post('/auth/logout', undefined, pair.access_token);
    const arrivals = await Promise.all(waits.map((w) => w(pair.session_id)));
    latencies.push(Math.max(...arrivals) - t0);
  }
  for (const c of controllers) c.abort();
  await server.close();
  return { median: median(latencies), p99: p99(latencies) };
}

const started = Date.now();
const a = await auditOverhead();
console.log(`Date ${new Date().toISOString()}, Node ${process.version}`);
console.log('| figure | value |\n|---|---:|');
console.log(`| login store transaction (session + first token + audit row), PGlite | ${a.session.toFixed(3)} ms |`);
console.log(`| refresh store transaction (lock, read, rotate, audit row), PGlite | ${a.rotate.toFixed(3)} ms |`);
console.log(`| one audit row in its own transaction, PGlite | ${a.audit.toFixed(3)} ms |`);
for (const n of [1, 100, 500]) {
  const f = await fanOut(n);
  console.log(`| revocation fan-out to ${n} SSE subscriber(s): logout 204 -> last subscriber has it, median / p99 of 20 | ${f.median.toFixed(1)} / ${f.p99.toFixed(1)} ms |`);
}
console.error(`(${((Date.now() - started) / 1000).toFixed(0)} s)`);
process.exit(0);
