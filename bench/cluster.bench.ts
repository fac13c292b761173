/**
 * Scale-out and fault benchmark: real `tessera serve` processes on one real
 * PostgreSQL and one real Redis (the test support starts both from the Debian
 * binaries on loopback ports), measured in one run. Prints markdown on stdout,
 * progress on stderr.
 *
 *   node --conditions=tessera-source --import tsx bench/cluster.bench.ts [options]
 *
 * Parts, each bounded in time and count:
 * 1. **One instance against two**, login and refresh: autocannon with the same total
 *    number of connections, all of them on instance A, then split over A and B (two
 *    passes, the second in reverse order, so drift falls on both alike). Twice: with
 *    the processes free to use both cores (what this machine can do in all), then
 *    with A pinned to CPU 0 and B to CPU 1, every thread of each (how the design
 *    scales when each instance gets a core; PostgreSQL, Redis and the load generator
 *    still float over both).
 * 2. **Refresh storm**: 100 sessions; each sends 5 refreshes one after the other, and
 *    each of those twice at once (a second tab), one copy to A and one to B: 1,000
 *    refreshes, half of them duplicates, 200 in flight. Then a burst: every session
 *    sends its current token 10 times at once (1,000 in flight). A false logout is a
 *    refused refresh of a session nobody logged out.
 * 3. **Mixed load with faults**: virtual users on A and B at random: `GET /auth/me`
 *    (65 %), refresh (25 %), logout + login (10 %). PostgreSQL is stopped for a few
 *    seconds in the middle, then Redis. A `503` with `Retry-After` is the contract's
 *    answer while the database is down: the user retries after it. Anything else that
 *    is not a success is an error.
 * 4. **Logout to rejection across instances**: a verifier (`@tessera/verify`)
 *    follows B's revocation feed; a session logs out on A; the time until the
 *    verifier refuses its access token. With Redis, then without (database poll).
 *
 * Options: --seconds 5 (per load pass)  --connections 16  --users 200  --vus 24
 *   --mixed 30 (s)  --samples 20  --json FILE
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { createVerifier, TesseraError } from '@tessera/verify';
import autocannonUntyped from 'autocannon';
import { createDatabase, type PostgresServer, startPostgres } from '../test/support/postgres_server.js';
import { type RedisServer, startRedis } from '../test/support/redis_server.js';
import { type ServeProcess, serveProcess } from '../test/support/serve_process.js';
import { percentile } from './lib/percentiles.js';

const { values: args } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    connections: { type: 'string', default: '16' },
    users: { type: 'string', default: '200' },
    vus: { type: 'string', default: '24' },
    mixed: { type: 'string', default: '30' },
    samples: { type: 'string', default: '20' },
    json: { type: 'string' },
  },
});
const SECONDS = Number(args.seconds);
const CONNECTIONS = Number(args.connections);
const USERS = Number(args.users);
const ISSUER = 'http://localhost:4000';
const PASSWORD = 'correct horse battery staple';
const log = (message: string) => process.stderr.write(`[cluster.bench] ${message}\n`);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface AutocannonResult {
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
}
const autocannon = autocannonUntyped as unknown as (options: Record<string, unknown>) => Promise<AutocannonResult>;

const fmt = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : 'n/a');

// ---------------------------------------------------------------- where the CPU goes

/** CPU seconds so far of every process on the machine, by role: the instances, PostgreSQL, Redis, this load generator, the rest. */
type CpuByRole = Record<'A' | 'B' | 'postgres' | 'redis' | 'load generator' | 'other', number>;
const TICKS = 100; // USER_HZ on Linux
const roles = { a: 0, b: 0 };
function cpuByRole(): CpuByRole {
  const out: CpuByRole = { A: 0, B: 0, postgres: 0, redis: 0, 'load generator': 0, other: 0 };
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${name}/stat`, 'utf8');
    } catch {
      continue;
    }
    const close = stat.lastIndexOf(')');
    const comm = stat.slice(stat.indexOf('(') + 1, close);
    const fields = stat.slice(close + 2).split(' ');
    const seconds = (Number(fields[11]) + Number(fields[12])) / TICKS;
    const pid = Number(name);
    const role = pid === roles.a ? 'A' : pid === roles.b ? 'B' : pid === process.pid ? 'load generator' : comm.startsWith('postgres') ? 'postgres' : comm.startsWith('redis') ? 'redis' : 'other';
    out[role] += seconds;
  }
  return out;
}
function coresBetween(before: CpuByRole, after: CpuByRole, seconds: number): CpuByRole {
  const out = { ...after };
  for (const key of Object.keys(out) as (keyof CpuByRole)[]) out[key] = Math.max(0, (after[key] - before[key]) / seconds);
  return out;
}
const fmtCores = (c: CpuByRole) =>
  (Object.entries(c) as [string, number][])
    .filter(([, v]) => v >= 0.05)
    .map(([k, v]) => `${k} ${v.toFixed(2)}`)
    .join(', ');

// ---------------------------------------------------------------- HTTP helpers

interface Reply {
  status: number;
  body: Record<string, unknown>;
  retryAfter: string | null;
  ms: number;
}

async function call(base: string, method: string, path: string, options: { token?: string; body?: unknown } = {}): Promise<Reply> {
  const t0 = performance.now();
  const headers: Record<string, string> = {};
  if (options.token) headers.authorization = `Bearer ${options.token}`;
  if (options.body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${base}${path}`, { method, headers, body: options.body === undefined ? undefined : JSON.stringify(options.body) });
  const text = await response.text();
  let body: Record<string, unknown> = {};
  try {
    body = text ? JSON.parse(text) : {};
  } catch {}
  return { status: response.status, body, retryAfter: response.headers.get('retry-after'), ms: performance.now() - t0 };
}

interface Session {
  username: string;
  access: string;
  refresh: string;
  sessionId: string;
}

async function login(base: string, username: string): Promise<Session> {
  const reply = await call(base, 'POST', '/auth/login', { body: { username, password: PASSWORD } });
  if (reply.status !== 200) throw new Error(`login ${username}: ${reply.status} ${JSON.stringify(reply.body)}`);
  return { username, access: reply.body.access_token as string, refresh: reply.body.refresh_token as string, sessionId: reply.body.session_id as string };
}

// ---------------------------------------------------------------- part 1: one instance against two

interface LoadResult {
  /** Cores each role kept busy during the pass (processes that exited in between are missed). */
  cores: CpuByRole;
  instances: number;
  perSecond: number;
  ok: number;
  failed: number;
  p50: number;
  p99: number;
}

/** Runs `connections` split evenly over `bases` for `seconds`; `setup`/`done` as in autocannon's requests. */
async function load(
  bases: string[],
  seconds: number,
  request: { method: string; path: string; headers: Record<string, string> },
  setup: (req: Record<string, unknown>, ctx: Record<string, unknown>) => Record<string, unknown>,
  done: (status: number, body: string, ctx: Record<string, unknown>) => boolean,
): Promise<LoadResult> {
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  const cpu0 = cpuByRole();
  const t0 = performance.now();
  await Promise.all(
    bases.map((base) =>
      autocannon({
        url: base,
        connections: CONNECTIONS / bases.length,
        pipelining: 1,
        duration: seconds,
        timeout: 30,
        requests: [
          {
            ...request,
            setupRequest(req: Record<string, unknown>, ctx: Record<string, unknown>) {
              const built = setup(req, ctx);
              ctx.t0 = performance.now();
              return built;
            },
            onResponse(status: number, body: string, ctx: Record<string, unknown>) {
              const latency = performance.now() - (ctx.t0 as number);
              if (done(status, body, ctx)) {
                ok++;
                latencies.push(latency);
              } else failed++;
            },
          },
        ],
      }),
    ),
  );
  const elapsed = (performance.now() - t0) / 1000;
  const cores = coresBetween(cpu0, cpuByRole(), elapsed);
  latencies.sort((a, b) => a - b);
  return { cores, instances: bases.length, perSecond: ok / elapsed, ok, failed, p50: percentile(latencies, 50), p99: percentile(latencies, 99) };
}

function loginLoad(bases: string[], users: string[], slots: { token: string }[]) {
  let next = 0;
  return load(
    bases,
    SECONDS,
    { method: 'POST', path: '/auth/login', headers: { 'content-type': 'application/json' } },
    (req) => ({ ...req, body: JSON.stringify({ username: users[next++ % users.length], password: PASSWORD }) }),
    (status, body) => {
      if (status !== 200) return false;
      if (slots.length < 2000) slots.push({ token: JSON.parse(body).refresh_token });
      return true;
    },
  );
}

/** Refreshes sessions from a FIFO queue, so no refresh token is ever in flight twice. */
function refreshLoad(bases: string[], queue: { token: string }[]) {
  return load(
    bases,
    SECONDS,
    { method: 'POST', path: '/auth/refresh', headers: { 'content-type': 'application/json' } },
    (req, ctx) => {
      const slot = queue.shift()!;
      ctx.slot = slot;
      return { ...req, headers: { ...(req.headers as object), authorization: `Bearer ${slot.token}` } };
    },
    (status, body, ctx) => {
      const slot = ctx.slot as { token: string };
      if (status === 200) slot.token = JSON.parse(body).refresh_token;
      queue.push(slot);
      return status === 200;
    },
  );
}

// ---------------------------------------------------------------- part 2: refresh storm

interface StormResult {
  name: string;
  requests: number;
  duplicates: number;
  ok: number;
  falseLogouts: number;
  otherFailures: number;
  distinctSuccessorsPerRefresh: number;
  p50: number;
  p99: number;
  seconds: number;
  sessionsAliveAfter: number;
}

async function refreshStorm(a: string, b: string, sessions: Session[], mode: 'pairs' | 'burst'): Promise<StormResult> {
  const latencies: number[] = [];
  let ok = 0;
  let falseLogouts = 0;
  let otherFailures = 0;
  let forked = 0;
  let requests = 0;
  const t0 = performance.now();
  const refreshOnce = async (session: Session, copies: number) => {
    const replies = await Promise.all(
      Array.from({ length: copies }, (_, i) => {
        requests++;
        return call(i % 2 === 0 ? a : b, 'POST', '/auth/refresh', { token: session.refresh });
      }),
    );
    const successors = new Set<string>();
    for (const reply of replies) {
      latencies.push(reply.ms);
      if (reply.status === 200) {
        ok++;
        successors.add(reply.body.refresh_token as string);
      } else if (reply.status === 401) falseLogouts++;
      else otherFailures++;
    }
    // Every copy of one refresh must get the same successor (the grace replay), or the tabs fork.
    if (successors.size > 1) forked++;
    const next = [...successors][0];
    if (next) session.refresh = next;
  };
  await Promise.all(
    sessions.map(async (session) => {
      if (mode === 'pairs') for (let round = 0; round < 5; round++) await refreshOnce(session, 2);
      else await refreshOnce(session, 10);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  let alive = 0;
  for (const session of sessions) {
    const reply = await call(a, 'POST', '/auth/refresh', { token: session.refresh });
    if (reply.status === 200) {
      alive++;
      session.refresh = reply.body.refresh_token as string;
      session.access = reply.body.access_token as string;
    }
  }
  latencies.sort((x, y) => x - y);
  return {
    name: mode === 'pairs' ? '100 sessions × 5 refreshes × 2 copies (A and B), 200 in flight' : '100 sessions × 10 copies of one token at once, 1,000 in flight',
    requests,
    duplicates: mode === 'pairs' ? requests / 2 : requests - sessions.length,
    ok,
    falseLogouts,
    otherFailures,
    distinctSuccessorsPerRefresh: forked,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    seconds,
    sessionsAliveAfter: alive,
  };
}

// ---------------------------------------------------------------- part 3: mixed load with faults

interface OpStats {
  ok: number;
  unavailable: number;
  errors: number;
  latencies: number[];
}
interface MixedResult {
  seconds: number;
  vus: number;
  ops: Record<string, OpStats>;
  windows: { name: string; from: number; to: number; ok: number; unavailable: number; errors: number }[];
  falseLogouts: number;
  errorSamples: string[];
  retriesThatSucceeded: number;
}

async function mixedLoad(bases: string[], users: string[], postgres: PostgresServer, redis: RedisServer): Promise<MixedResult> {
  const seconds = Number(args.mixed);
  const vus = Number(args.vus);
  const ops: Record<string, OpStats> = {};
  const timeline: { at: number; outcome: 'ok' | 'unavailable' | 'error' }[] = [];
  const errorSamples: string[] = [];
  let falseLogouts = 0;
  let retriesThatSucceeded = 0;
  const t0 = performance.now();
  const elapsed = () => (performance.now() - t0) / 1000;
  const record = (op: string, reply: Reply | undefined, outcome: 'ok' | 'unavailable' | 'error', detail?: string) => {
    const stats = (ops[op] ??= { ok: 0, unavailable: 0, errors: 0, latencies: [] });
    if (outcome === 'ok') stats.ok++;
    else if (outcome === 'unavailable') stats.unavailable++;
    else {
      stats.errors++;
      if (errorSamples.length < 12) errorSamples.push(`${elapsed().toFixed(1)} s ${op}: ${detail ?? `${reply?.status} ${JSON.stringify(reply?.body)}`}`);
    }
    if (reply && outcome === 'ok') stats.latencies.push(reply.ms);
    timeline.push({ at: elapsed(), outcome });
  };
  /**
   * One operation as a well-behaved client does it: on `503` with `Retry-After`, wait
   * and try again (up to 20 times); a network error is an error.
   */
  const attempt = async (op: string, run: () => Promise<Reply>, okStatus: number): Promise<Reply | undefined> => {
    for (let tries = 0; tries < 20; tries++) {
      let reply: Reply;
      try {
        reply = await run();
      } catch (error) {
        record(op, undefined, 'error', `network: ${(error as Error).message}`);
        return undefined;
      }
      if (reply.status === okStatus) {
        if (tries > 0) retriesThatSucceeded++;
        record(op, reply, 'ok');
        return reply;
      }
      if (reply.status === 503 && reply.retryAfter !== null && reply.body.error === 'unavailable') {
        record(op, reply, 'unavailable');
        await sleep(Math.min(500, Number(reply.retryAfter) * 1000));
        continue;
      }
      record(op, reply, 'error');
      return reply;
    }
    return undefined;
  };
  const pick = () => bases[Math.floor(Math.random() * bases.length)]!;

  const faults = (async () => {
    const at = (s: number) => sleep(Math.max(0, s * 1000 - (performance.now() - t0)));
    await at(seconds * 0.25);
    log(`mixed: PostgreSQL down at ${elapsed().toFixed(1)} s`);
    const pgDown = elapsed();
    await postgres.pause();
    await at(seconds * 0.25 + 3);
    await postgres.resume();
    const pgUp = elapsed();
    log(`mixed: PostgreSQL back at ${pgUp.toFixed(1)} s`);
    await at(seconds * 0.6);
    const redisDown = elapsed();
    log(`mixed: Redis down at ${redisDown.toFixed(1)} s`);
    await redis.stop();
    await at(seconds * 0.6 + 4);
    await redis.start();
    const redisUp = elapsed();
    log(`mixed: Redis back at ${redisUp.toFixed(1)} s`);
    return { pgDown, pgUp, redisDown, redisUp };
  })();

  await Promise.all(
    Array.from({ length: vus }, async (_, vu) => {
      const username = users[vu % users.length]!;
      let session: Session | undefined;
      const signIn = async () => {
        const reply = await attempt('login', () => call(pick(), 'POST', '/auth/login', { body: { username, password: PASSWORD } }), 200);
        session = reply?.status === 200 ? { username, access: reply.body.access_token as string, refresh: reply.body.refresh_token as string, sessionId: reply.body.session_id as string } : undefined;
      };
      await signIn();
      while (elapsed() < seconds) {
        if (!session) {
          await sleep(100);
          await signIn();
          continue;
        }
        const r = Math.random();
        if (r < 0.65) {
          const current = session;
          await attempt('GET /auth/me', () => call(pick(), 'GET', '/auth/me', { token: current.access }), 200);
        } else if (r < 0.9) {
          const current = session;
          const reply = await attempt('refresh', () => call(pick(), 'POST', '/auth/refresh', { token: current.refresh }), 200);
          if (reply?.status === 200) {
            current.refresh = reply.body.refresh_token as string;
            current.access = reply.body.access_token as string;
          } else if (reply?.status === 401) {
            falseLogouts++; // nobody logged this session out
            session = undefined;
          }
        } else {
          const current = session;
          await attempt('logout', () => call(pick(), 'POST', '/auth/logout', { token: current.access }), 204);
          session = undefined;
          await signIn();
        }
      }
    }),
  );
  const f = await faults;
  const windowOf = (name: string, from: number, to: number) => {
    const inside = timeline.filter((e) => e.at >= from && e.at < to);
    return {
      name,
      from,
      to,
      ok: inside.filter((e) => e.outcome === 'ok').length,
      unavailable: inside.filter((e) => e.outcome === 'unavailable').length,
      errors: inside.filter((e) => e.outcome === 'error').length,
    };
  };
  return {
    seconds: elapsed(),
    vus,
    ops,
    windows: [
      windowOf('steady, before the faults', 0, f.pgDown),
      windowOf('PostgreSQL down → back (+2 s)', f.pgDown, f.pgUp + 2),
      windowOf('between the faults', f.pgUp + 2, f.redisDown),
      windowOf('Redis down → back (+2 s)', f.redisDown, f.redisUp + 2),
      windowOf('steady, after the faults', f.redisUp + 2, Number.POSITIVE_INFINITY),
    ],
    falseLogouts,
    errorSamples,
    retriesThatSucceeded,
  };
}

// ---------------------------------------------------------------- part 4: logout → rejection across instances

async function logoutToRejection(a: string, b: string, username: string, samples: number): Promise<{ ms: number[] }> {
  const verifier = createVerifier({
    issuer: ISSUER,
    audience: 'tessera-api',
    jwksUri: `${b}/.well-known/jwks.json`,
    revocation: { url: `${b}/auth/revocations` },
  });
  const ms: number[] = [];
  try {
    await verifier.prefetch();
    for (let i = 0; i < samples; i++) {
      const session = await login(a, username);
      await verifier.verify(session.access);
      const logout = await call(a, 'POST', '/auth/logout', { token: session.access });
      if (logout.status !== 204) throw new Error(`logout: ${logout.status}`);
      const loggedOut = performance.now();
      for (;;) {
        const refused = await verifier.verify(session.access).then(
          () => false,
          (error: unknown) => error instanceof TesseraError && error.code === 'token_revoked',
        );
        if (refused) break;
        if (performance.now() - loggedOut > 10_000) throw new Error('not refused within 10 s');
        await sleep(1);
      }
      ms.push(performance.now() - loggedOut);
    }
  } finally {
    verifier.close();
  }
  return { ms: ms.sort((x, y) => x - y) };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const started = performance.now();
  log('starting PostgreSQL and Redis');
  const [postgres, redis] = await Promise.all([startPostgres({ durable: true }), startRedis()]);
  const instances: ServeProcess[] = [];
  try {
    const databaseUrl = await createDatabase(postgres.url, 'cluster_bench');
    const env = { TESSERA_RATE_LIMIT: 'ip=10000000/1m,user=10000000/1m' };
    const flags = ['--database-url', databaseUrl, '--redis-url', redis.url, '--issuer', ISSUER, '--web-root', 'none'];
    instances.push(await serveProcess(flags, env));
    instances.push(await serveProcess(flags, env));
    const [a, b] = instances.map((i) => i.url) as [string, string];
    roles.a = instances[0]!.child.pid!;
    roles.b = instances[1]!.child.pid!;
    log(`instances: A ${a}, B ${b}`);

    const users = Array.from({ length: USERS }, (_, i) => `bench-${i}-${process.pid}`);
    for (let i = 0; i < users.length; i += 10) {
      await Promise.all(
        users.slice(i, i + 10).map(async (username, j) => {
          const reply = await call(j % 2 ? a : b, 'POST', '/auth/register', { body: { username, password: PASSWORD } });
          if (reply.status !== 201) throw new Error(`register: ${reply.status} ${JSON.stringify(reply.body)}`);
        }),
      );
    }
    log(`${users.length} users registered`);

    // Part 1
    const scale: { op: string; pinned: boolean; one: LoadResult[]; two: LoadResult[] }[] = [];
    const slots: { token: string }[] = [];
    await loginLoad([a, b], users, slots); // warm-up, unmeasured; also fills the refresh queue
    const cpus = os.availableParallelism();
    const pin = (child: ServeProcess, list: string) => execFileSync('taskset', ['-a', '-p', '-c', list, String(child.child.pid)], { stdio: 'ignore' });
    for (const [pinned, op] of [[false, 'login'], [false, 'refresh'], [true, 'login'], [true, 'refresh']] as const) {
      if (pinned && cpus < 2) continue;
      pin(instances[0]!, pinned ? '0' : `0-${cpus - 1}`);
      pin(instances[1]!, pinned ? '1' : `0-${cpus - 1}`);
      const entry = { op, pinned, one: [] as LoadResult[], two: [] as LoadResult[] };
      for (const order of [[1, 2], [2, 1]]) {
        for (const n of order) {
          const bases = n === 1 ? [a] : [a, b];
          const result = op === 'login' ? await loginLoad(bases, users, slots) : await refreshLoad(bases, slots);
          (n === 1 ? entry.one : entry.two).push(result);
          log(`${op}${pinned ? ' (pinned)' : ''} on ${n} instance(s): ${fmt(result.perSecond, 0)}/s, p99 ${fmt(result.p99)} ms, failed ${result.failed}; cores: ${fmtCores(result.cores)}`);
          await sleep(500);
        }
      }
      scale.push(entry);
    }
    for (const instance of instances) pin(instance, `0-${cpus - 1}`);

    // Part 2
    const stormSessions = await Promise.all(Array.from({ length: 100 }, (_, i) => login(i % 2 ? a : b, users[i % users.length]!)));
    const storms = [await refreshStorm(a, b, stormSessions, 'pairs'), await refreshStorm(a, b, stormSessions, 'burst')];
    for (const storm of storms) log(`storm: ${storm.name}: ok ${storm.ok}/${storm.requests}, false logouts ${storm.falseLogouts}, p99 ${fmt(storm.p99)} ms`);

    // Part 4 first (needs Redis up), then part 3 (takes Redis and PostgreSQL down)
    const samples = Number(args.samples);
    const withRedis = await logoutToRejection(a, b, users[0]!, samples);
    log(`logout on A → refused by a verifier on B's feed, with Redis: median ${fmt(percentile(withRedis.ms, 50))} ms`);
    await redis.stop();
    await sleep(1500);
    const withoutRedis = await logoutToRejection(a, b, users[1]!, Math.min(samples, 10));
    log(`same without Redis (database poll): median ${fmt(percentile(withoutRedis.ms, 50))} ms`);
    await redis.start();
    await sleep(2000);

    const mixed = await mixedLoad([a, b], users, postgres, redis);
    log(`mixed: ${Object.entries(mixed.ops).map(([op, s]) => `${op} ${s.ok} ok/${s.unavailable} 503/${s.errors} err`).join(', ')}`);

    const elapsed = (performance.now() - started) / 1000;
    const report = render({ scale, storms, mixed, withRedis: withRedis.ms, withoutRedis: withoutRedis.ms, elapsed });
    process.stdout.write(report);
    if (args.json) (await import('node:fs')).writeFileSync(args.json, JSON.stringify({ scale, storms, mixed, withRedis, withoutRedis, elapsed }, null, 2));
  } finally {
    await Promise.all(instances.map((i) => i.stop()));
    await Promise.all([postgres.stop(), redis.stop()]);
  }
}

function render(r: {
  scale: { op: string; pinned: boolean; one: LoadResult[]; two: LoadResult[] }[];
  storms: StormResult[];
  mixed: MixedResult;
  withRedis: number[];
  withoutRedis: number[];
  elapsed: number;
}): string {
  const mean = (xs: number[]) => xs.reduce((s, x) => s + x, 0) / xs.length;
  const lines: string[] = [];
  lines.push(`Run of ${new Date().toISOString().slice(0, 16)}Z, ${fmt(r.elapsed, 0)} s; two \`tessera serve\` instances (RS256), PostgreSQL 15 (fsync on), Redis and the load generator share this machine's ${os.availableParallelism()} cores.`);
  lines.push('');
  lines.push(`### One instance against two (${CONNECTIONS} connections in all, ${SECONDS} s per pass, two passes)`);
  lines.push('');
  lines.push('| op | instances on | 1 instance req/s (passes) | p99 ms | 2 instances req/s (passes) | p99 ms | 2 ÷ 1 | failed |');
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|');
  for (const s of r.scale) {
    const one = mean(s.one.map((x) => x.perSecond));
    const two = mean(s.two.map((x) => x.perSecond));
    lines.push(
      `| ${s.op} | ${s.pinned ? 'one core each (A: CPU 0, B: CPU 1)' : 'any core'} | ${fmt(one, 0)} (${s.one.map((x) => fmt(x.perSecond, 0)).join(', ')}) | ${fmt(Math.max(...s.one.map((x) => x.p99)))} | ${fmt(two, 0)} (${s.two.map((x) => fmt(x.perSecond, 0)).join(', ')}) | ${fmt(Math.max(...s.two.map((x) => x.p99)))} | **${fmt(two / one, 2)}** | ${[...s.one, ...s.two].reduce((n, x) => n + x.failed, 0)} |`,
    );
  }
  lines.push('');
  lines.push('Where the two cores went (cores busy per role, mean of the two passes; the machine has 2):');
  lines.push('');
  lines.push('| op | instances on | instances | A | B | PostgreSQL | Redis | load generator | other | all |');
  lines.push('|---|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of r.scale) {
    for (const [n, runs] of [[1, s.one], [2, s.two]] as const) {
      const avg = (key: keyof CpuByRole) => mean(runs.map((x) => x.cores[key]));
      const all = (['A', 'B', 'postgres', 'redis', 'load generator', 'other'] as const).reduce((sum, key) => sum + avg(key), 0);
      lines.push(`| ${s.op} | ${s.pinned ? 'one core each' : 'any core'} | ${n} | ${fmt(avg('A'), 2)} | ${fmt(avg('B'), 2)} | ${fmt(avg('postgres'), 2)} | ${fmt(avg('redis'), 2)} | ${fmt(avg('load generator'), 2)} | ${fmt(avg('other'), 2)} | ${fmt(all, 2)} |`);
    }
  }
  lines.push('');
  lines.push('### Refresh storm (copies alternate between A and B)');
  lines.push('');
  lines.push('| storm | requests | duplicates | 200 | false logouts | other failures | refreshes whose copies got different successors | p50 ms | p99 ms | wall s | sessions alive after |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const s of r.storms) {
    lines.push(`| ${s.name} | ${s.requests} | ${s.duplicates} | ${s.ok} | **${s.falseLogouts}** | ${s.otherFailures} | ${s.distinctSuccessorsPerRefresh} | ${fmt(s.p50)} | **${fmt(s.p99)}** | ${fmt(s.seconds, 2)} | ${s.sessionsAliveAfter}/100 |`);
  }
  lines.push('');
  const m = r.mixed;
  lines.push(`### Mixed load with faults (${m.vus} virtual users on A and B at random, ${fmt(m.seconds, 0)} s)`);
  lines.push('');
  lines.push('| op | ok | 503 unavailable (retried) | errors | p50 ms | p99 ms |');
  lines.push('|---|---:|---:|---:|---:|---:|');
  for (const [op, s] of Object.entries(m.ops)) {
    const sorted = [...s.latencies].sort((x, y) => x - y);
    lines.push(`| ${op} | ${s.ok} | ${s.unavailable} | ${s.errors} | ${fmt(percentile(sorted, 50))} | ${fmt(percentile(sorted, 99))} |`);
  }
  lines.push('');
  lines.push('| window | from s | to s | ok | 503 (retried) | errors | error rate |');
  lines.push('|---|---:|---:|---:|---:|---:|---:|');
  for (const w of m.windows) {
    const total = w.ok + w.unavailable + w.errors;
    lines.push(`| ${w.name} | ${fmt(w.from)} | ${Number.isFinite(w.to) ? fmt(w.to) : 'end'} | ${w.ok} | ${w.unavailable} | ${w.errors} | ${total ? fmt((100 * w.errors) / total, 2) : '0'} % |`);
  }
  lines.push('');
  lines.push(`False logouts: **${m.falseLogouts}**. Operations that got a 503 and then succeeded on a retry: ${m.retriesThatSucceeded}.`);
  if (m.errorSamples.length) lines.push(`Errors seen: ${m.errorSamples.map((e) => `\`${e}\``).join('; ')}`);
  lines.push('');
  lines.push('### Logout on A → refused by a verifier following B\'s revocation feed');
  lines.push('');
  lines.push('| path | samples | median ms | p99 ms | max ms |');
  lines.push('|---|---:|---:|---:|---:|');
  lines.push(`| with Redis (pub/sub) | ${r.withRedis.length} | ${fmt(percentile(r.withRedis, 50))} | ${fmt(percentile(r.withRedis, 99))} | ${fmt(r.withRedis.at(-1) ?? Number.NaN)} |`);
  lines.push(`| Redis down (database poll, 1 s) | ${r.withoutRedis.length} | ${fmt(percentile(r.withoutRedis, 50))} | ${fmt(percentile(r.withoutRedis, 99))} | ${fmt(r.withoutRedis.at(-1) ?? Number.NaN)} |`);
  lines.push('');
  return `${lines.join('\n')}\n`;
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
