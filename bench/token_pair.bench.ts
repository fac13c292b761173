/**
 * Token-pair benchmark: login and refresh throughput of a real `tessera serve`
 * child process, each against its floor measured in this same run on this same
 * machine, plus p50/p99 latency and the RSS of an idle server. Prints a markdown
 * table on stdout (progress on stderr).
 *
 *   npm run build    # the server child runs packages/cli/dist; the script warns when it is stale
 *   node --conditions=tessera-source --import tsx bench/token_pair.bench.ts [options]
 *
 * (`--conditions=tessera-source` makes `@tessera/server` resolve to packages/server/src;
 * without it, it resolves to packages/server/dist, which works just as well once built.)
 *
 * Options (all optional):
 *   --duration S         measured seconds per HTTP phase                    (default 10)
 *   --warmup S           unmeasured seconds before the refresh phase        (default 2)
 *   --login-warmup S     unmeasured seconds before the login phase          (default 10)
 *                        (at ~100 logins/s, V8 is still optimising the login path through
 *                        the first thousand logins: its compiler threads took 0.4-0.6 ms of
 *                        CPU per login over a 2 s warm-up, 0.1 ms after 20 s)
 *   --floor-duration S   measured seconds of a floor, before AND after the
 *                        HTTP phase it belongs to (the floor is their mean)  (default 3)
 *   --connections N      autocannon connections = floor concurrency         (default 8)
 *   --users N            distinct users registered before login             (default 400)
 *   --sessions N         sessions rotated by the refresh phase              (default 256)
 *   --algs A,B           signing algorithms, in order                       (default RS256,EdDSA)
 *   --decompose          also time the server's Store calls one by one on PGlite (+15 s)
 *   --json FILE          also write the raw results as JSON
 *   --cpu-prof DIR       run the server child with --cpu-prof into DIR (investigation only)
 *   --quiet-wait S       before each measured phase, wait for other processes to leave the
 *                        CPU (< 0.1 core for 1 s); at most S s in all       (default 60)
 *
 * Load generator: autocannon 8 in this process with `requests: [{ setupRequest, onResponse }]`.
 * Floors run in this process too, at the same concurrency, while the server child is idle.
 * The first algorithm's server starts on a fresh data dir and registers the users; each
 * further algorithm's server restarts on that same data dir (so its idle RSS is the
 * restart case) and logs the same users in.
 */
import { execFileSync } from 'node:child_process';
import { KeyObject, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hash, verify } from '@node-rs/argon2';
import { type Database, decideRotation, migrate, openPgliteDatabase, Store, type UserRecord } from '@tessera/server';
import autocannonUntyped from 'autocannon';
import { createSigner, createVerifier } from 'fast-jwt';
import { percentile } from './lib/percentiles.js';
import { procCpuMs, procStatusMb, selfCpuMs } from './lib/proc_cpu.js';
import { cpuSnapshot, foreignCores, waitForQuiet } from './lib/quiet.js';
import { type ServeChild, spawnServe, stopServe } from './lib/serve_child.js';
import { type CryptoKey, generateKeyPair, jwtVerify, SignJWT } from 'jose';

// ---------------------------------------------------------------- options

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'packages/cli/dist/bin.js');

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    'login-warmup': { type: 'string', default: '10' },
    'floor-duration': { type: 'string', default: '3' },
    connections: { type: 'string', default: '8' },
    users: { type: 'string', default: '400' },
    sessions: { type: 'string', default: '256' },
    algs: { type: 'string', default: 'RS256,EdDSA' },
    decompose: { type: 'boolean', default: false },
    json: { type: 'string' },
    'cpu-prof': { type: 'string' },
    'quiet-wait': { type: 'string', default: '60' },
  },
});
const DURATION_S = Number(args.duration);
const WARMUP_S = Number(args.warmup);
const LOGIN_WARMUP_S = Number(args['login-warmup']);
const FLOOR_S = Number(args['floor-duration']);
const CONNECTIONS = Number(args.connections);
const USERS = Number(args.users);
const SESSIONS = Number(args.sessions);
type Alg = 'RS256' | 'PS256' | 'ES256' | 'EdDSA';
const ALGS = args.algs!.split(',') as Alg[];

/** The server's parameters (packages/server/src/lib/passwords.ts). `2` = Argon2id. */
const ARGON2ID = { algorithm: 2, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;
const PASSWORD = 'correct horse battery staple';
const RATE_LIMIT = 'ip=1000000/1m,user=1000000/1m';
const ACCESS_TYP = 'at+jwt';
const REFRESH_TYP = 'refresh+jwt';
const DAY_MS = 86_400_000;

// ---------------------------------------------------------------- measuring

const T0 = performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => process.stderr.write(`[bench ${((performance.now() - T0) / 1000).toFixed(1)}s] ${msg}\n`);

interface Measured {
  /** Successful operations (HTTP 200/201) per second of the measured window. */
  perSecond: number;
  ok: number;
  failed: number;
  seconds: number;
  p50: number;
  p99: number;
  /** CPU ms per successful op of this process (the floor, or autocannon for HTTP phases). */
  cpuSelfMs: number;
  /** HTTP phases: the server child's CPU ms per request, from /proc. */
  cpuServerMs?: number;
  /** HTTP phases: share of one core the server's main (event-loop) thread was on CPU. */
  serverMainBusy?: number;
  /** HTTP phases: share of one core the server's other threads (libuv pool: argon2, WebCrypto; GC) were on CPU. */
  serverOtherBusy?: number;
  /** Cores' worth of CPU used by processes other than this one and the server child during the window. */
  foreignCores?: number;
  /** Floors: the before and after halves. */
  halves?: [number, number];
  extra?: Record<string, number>;
  latencies?: number[];
}

/** The pid of the running server child, if any: its CPU is ours, not foreign. */
let serverPid: number | undefined;

/** Temp dirs to remove even on Ctrl-C. */
const tempDirs = new Set<string>();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    if (serverPid !== undefined) {
      try {
        process.kill(serverPid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  });
}

async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(os.tmpdir(), prefix));
  tempDirs.add(dir);
  return dir;
}

/** The run's budget for waiting on other processes (--quiet-wait). */
const quietBudget = { ms: Number(args['quiet-wait']) * 1000 };

/** CPU ms of the server child so far (0 when there is none): its CPU is ours, not foreign. */
function serverCpuMs(): number {
  try {
    return serverPid === undefined ? 0 : procCpuMs(serverPid).total;
  } catch {
    return 0; // exited
  }
}

/**
 * Waits until other processes use less than 0.1 core over one second, within the
 * `--quiet-wait` budget for the whole run. Every measured phase calls it first:
 * floors and server phases should see the same, otherwise idle, machine.
 */
async function waitQuiet(phase: string): Promise<void> {
  await waitForQuiet({ budget: quietBudget, threshold: 0.1, ours: serverCpuMs, log: (message) => log(`${phase}: ${message}`) });
}

/**
 * Runs `op` in `concurrency` closed loops: `warmupS` unmeasured, then `durationS`
 * measured. Ops that start and complete inside the window count.
 */
async function closedLoop(concurrency: number, warmupS: number, durationS: number, op: () => Promise<void>): Promise<Measured> {
  const from = performance.now() + warmupS * 1000;
  const until = from + durationS * 1000;
  const latencies: number[] = [];
  // CPU is sampled in the loops, not by timers: an op that resolves through
  // microtasks only (PGlite one at a time) would starve the timer phase.
  let cpuFrom = Number.NaN;
  let cpuUntil = Number.NaN;
  let snapFrom: ReturnType<typeof cpuSnapshot> | undefined;
  let snapUntil: ReturnType<typeof cpuSnapshot> | undefined;
  const loop = async () => {
    while (performance.now() < until) {
      const t = performance.now();
      if (Number.isNaN(cpuFrom) && t >= from) {
        cpuFrom = selfCpuMs();
        snapFrom = cpuSnapshot(serverCpuMs);
      }
      await op();
      const end = performance.now();
      if (t >= from && end <= until) latencies.push(end - t);
    }
    if (Number.isNaN(cpuUntil)) {
      cpuUntil = selfCpuMs();
      snapUntil = cpuSnapshot(serverCpuMs);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, loop));
  latencies.sort((a, b) => a - b);
  return {
    perSecond: latencies.length / durationS,
    ok: latencies.length,
    failed: 0,
    seconds: durationS,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuSelfMs: (cpuUntil - cpuFrom) / latencies.length,
    foreignCores: snapFrom && snapUntil ? foreignCores(snapFrom, snapUntil) : Number.NaN,
    latencies,
  };
}

/** A floor measured before and after its HTTP phase: the mean rate, pooled latencies. */
function bracket(before: Measured, after: Measured): Measured {
  const latencies = [...before.latencies!, ...after.latencies!].sort((a, b) => a - b);
  const ok = before.ok + after.ok;
  return {
    perSecond: (before.perSecond + after.perSecond) / 2,
    ok,
    failed: 0,
    seconds: before.seconds + after.seconds,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuSelfMs: (before.cpuSelfMs * before.ok + after.cpuSelfMs * after.ok) / ok,
    foreignCores: Math.max(before.foreignCores!, after.foreignCores!),
    halves: [before.perSecond, after.perSecond],
  };
}

// ---------------------------------------------------------------- the server child

interface Server extends ServeChild {
  dataDir: string;
}

async function startServer(alg: Alg, dataDir: string): Promise<Server> {
  const prof = args['cpu-prof'];
  const nodeFlags = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}`, `--cpu-prof-name=server-${alg}-${Date.now()}.cpuprofile`] : [];
  const server = await spawnServe(['--data-dir', dataDir, '--alg', alg, '--rate-limit', RATE_LIMIT, '--log-level', 'silent'], { nodeFlags, cwd: ROOT });
  serverPid = server.pid;
  return { ...server, dataDir };
}

async function stopServer(server: Server): Promise<void> {
  await stopServe(server);
  serverPid = undefined;
}

async function registerUsers(server: Server, count: number, concurrency: number): Promise<string[]> {
  const tag = randomBytes(3).toString('hex');
  const names = Array.from({ length: count }, (_, i) => `bench-${tag}-${i}`);
  let next = 0;
  const worker = async () => {
    while (next < names.length) {
      const username = names[next++]!;
      const res = await fetch(new URL('/auth/register', server.url), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username, password: PASSWORD }),
      });
      const text = await res.text();
      if (res.status !== 201) throw new Error(`register ${username}: ${res.status} ${text}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return names;
}

// ---------------------------------------------------------------- HTTP load (autocannon)

interface AutocannonResult {
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}
const autocannon = autocannonUntyped as unknown as (options: Record<string, unknown>) => Promise<AutocannonResult>;

interface SessionSlot {
  token: string;
}
interface Ctx {
  t0?: number;
  session?: SessionSlot;
}

/**
 * One autocannon run of `seconds` with a single dynamic request: `setup` fills in
 * each request just before it is sent, `done` sees each response (true = success).
 * Latency is taken here, setupRequest -> onResponse, with sub-millisecond resolution.
 */
async function httpRun(
  server: Server,
  seconds: number,
  request: { method: string; path: string; headers: Record<string, string> },
  setup: (req: Record<string, unknown>, ctx: Ctx) => Record<string, unknown> | null,
  done: (status: number, body: string, ctx: Ctx) => boolean,
): Promise<Measured> {
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
  const snap0 = cpuSnapshot(serverCpuMs);
  const cpu0 = procCpuMs(server.pid);
  const self0 = selfCpuMs();
  const t0 = performance.now();
  const result = await autocannon({
    url: server.url.origin,
    connections: CONNECTIONS,
    pipelining: 1,
    duration: seconds,
    timeout: 30,
    requests: [
      {
        ...request,
        setupRequest(req: Record<string, unknown>, ctx: Ctx) {
          const built = setup(req, ctx);
          ctx.t0 = performance.now();
          return built;
        },
        onResponse(status: number, body: string, ctx: Ctx) {
          const latency = performance.now() - ctx.t0!;
          if (done(status, body, ctx)) {
            ok++;
            latencies.push(latency);
          } else {
            failed++;
          }
        },
      },
    ],
  });
  const elapsed = (performance.now() - t0) / 1000;
  const cpu1 = procCpuMs(server.pid);
  const self1 = selfCpuMs();
  const snap1 = cpuSnapshot(serverCpuMs);
  latencies.sort((a, b) => a - b);
  return {
    perSecond: ok / elapsed,
    ok,
    failed,
    seconds: elapsed,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuSelfMs: (self1 - self0) / ok,
    cpuServerMs: (cpu1.total - cpu0.total) / ok,
    serverMainBusy: (cpu1.main - cpu0.main) / 1000 / elapsed,
    serverOtherBusy: (cpu1.total - cpu1.main - (cpu0.total - cpu0.main)) / 1000 / elapsed,
    foreignCores: foreignCores(snap0, snap1),
    extra: {
      autocannonP50: result.latency.p50,
      autocannonP99: result.latency.p99,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
    },
  };
}

/** Logs in round-robin over `users`; keeps the refresh token of every session opened. */
function loginLoad(server: Server, users: string[], seconds: number, sessions: SessionSlot[]): Promise<Measured> {
  let next = 0;
  return httpRun(
    server,
    seconds,
    { method: 'POST', path: '/auth/login', headers: { 'content-type': 'application/json' } },
    (req) => ({ ...req, body: JSON.stringify({ username: users[next++ % users.length], password: PASSWORD }) }),
    (status, body) => {
      if (status !== 200) return false;
      sessions.push({ token: (JSON.parse(body) as { refresh_token: string }).refresh_token });
      return true;
    },
  );
}

/**
 * Refreshes: each request takes the session at the head of the free queue (so its
 * newest refresh token is not in flight) and the response's refresh token goes
 * back to the tail. A refresh token seen before would be a grace-window replay:
 * counted, and must be 0.
 */
async function refreshLoad(server: Server, free: SessionSlot[], seconds: number): Promise<Measured> {
  const seen = new Set<string>();
  let replays = 0;
  let starved = 0;
  const measured = await httpRun(
    server,
    seconds,
    { method: 'POST', path: '/auth/refresh', headers: {} },
    (req, ctx) => {
      const session = free.shift();
      if (!session) {
        starved++;
        return null;
      }
      ctx.session = session;
      return { ...req, headers: { authorization: `Bearer ${session.token}` } };
    },
    (status, body, ctx) => {
      if (status !== 200) return false;
      const token = (JSON.parse(body) as { refresh_token: string }).refresh_token;
      if (seen.has(token) || token === ctx.session!.token) replays++;
      seen.add(token);
      ctx.session!.token = token;
      free.push(ctx.session!);
      return true;
    },
  );
  return { ...measured, extra: { ...measured.extra, replays, starved } };
}

/** Logs in (fetch, unmeasured) until `sessions` holds `count` sessions: for short login phases. */
async function topUpSessions(server: Server, users: string[], sessions: SessionSlot[], count: number): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (sessions.length < count) {
      const res = await fetch(new URL('/auth/login', server.url), {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username: users[next++ % users.length], password: PASSWORD }),
      });
      const text = await res.text();
      if (res.status !== 200) throw new Error(`login: ${res.status} ${text}`);
      sessions.push({ token: (JSON.parse(text) as { refresh_token: string }).refresh_token });
    }
  };
  await Promise.all(Array.from({ length: CONNECTIONS }, worker));
}

// ---------------------------------------------------------------- floors

/** argon2id verify with the server's parameters, `concurrency` in flight, in this process. */
async function argon2Floor(): Promise<(warmupS: number) => Promise<Measured>> {
  const stored = await hash(PASSWORD, ARGON2ID);
  return (warmupS) =>
    closedLoop(CONNECTIONS, warmupS, FLOOR_S, async () => {
      if (!(await verify(stored, PASSWORD))) throw new Error('argon2 verify failed');
    });
}

/** The floor's store: embedded PGlite in a temp data dir with the server's schema (migrate). */
interface FloorStore {
  dir: string;
  db: Database;
  user: UserRecord;
  sessionIds: string[];
}

async function openFloorStore(sessionCount: number): Promise<FloorStore> {
  const dir = await tempDir('tessera-bench-floor-');
  const db = await openPgliteDatabase(join(dir, 'db'));
  await migrate(db);
  const store = new Store(db);
  const now = new Date();
  const user = await store.users.create(
    { id: randomUUID(), username: 'floor-user', skeleton: 'floor-user', passwordHash: await hash(PASSWORD, ARGON2ID), roles: [], now },
    { ip: '127.0.0.1', userAgent: 'bench' },
  );
  const sessionIds: string[] = [];
  for (let i = 0; i < sessionCount; i++) {
    const id = randomUUID();
    await store.sessions.open({
      session: { id, user, client: { ip: '127.0.0.1', userAgent: 'bench' } },
      token: { jtiHash: randomBytes(32).toString('base64url'), issuedAt: now, expiresAt: new Date(now.getTime() + 30 * DAY_MS) },
      single: false,
      now,
    });
    sessionIds.push(id);
  }
  return { dir, db, user, sessionIds };
}

/**
 * verify + one `UPDATE … RETURNING` + two signs: a verify of a refresh token (the
 * server's options), one autocommitted UPDATE of the session row on the floor store,
 * and two signs (access + refresh, the server's claims and headers), `concurrency` in
 * flight. `crypto: 'jose'` (the floor of the goal) signs and verifies with jose on
 * WebCrypto, each a job on libuv's pool; `'in-place'` (a diagnostic) the way the server
 * does since 2026-12-04, synchronously on node:crypto through fast-jwt (verify always,
 * sign for EdDSA and ES256; RS256/PS256 signing stays on jose, as in the server).
 */
async function refreshFloor(fs: FloorStore, alg: Alg, crypto: 'jose' | 'in-place' = 'jose'): Promise<(warmupS: number) => Promise<Measured>> {
  const { publicKey, privateKey } = (await generateKeyPair(alg)) as { publicKey: CryptoKey; privateKey: CryptoKey };
  const kid = randomBytes(32).toString('base64url').slice(0, 43);
  const issuer = 'http://localhost:40000';
  const user = fs.user;
  const inPlaceSign = crypto === 'in-place' && (alg === 'EdDSA' || alg === 'ES256');
  const pkcs8 = KeyObject.from(privateKey).export({ format: 'pem', type: 'pkcs8' }) as string;
  const signers = {
    [REFRESH_TYP]: createSigner({ key: pkcs8, algorithm: alg, kid, header: { alg, typ: REFRESH_TYP } }),
    [ACCESS_TYP]: createSigner({ key: pkcs8, algorithm: alg, kid, header: { alg, typ: ACCESS_TYP } }),
  };
  const sign = (typ: string, claims: Record<string, unknown>): Promise<string> =>
    inPlaceSign ? Promise.resolve(signers[typ as keyof typeof signers](claims)) : new SignJWT(claims).setProtectedHeader({ alg, kid, typ }).sign(privateKey);
  const verifyInPlace = createVerifier({
    key: KeyObject.from(publicKey).export({ format: 'pem', type: 'spki' }) as string,
    algorithms: [alg],
    allowedIss: issuer,
    allowedAud: issuer,
    checkTyp: REFRESH_TYP,
    requiredClaims: ['sub', 'exp', 'iat', 'jti', 'sid'],
    clockTolerance: 5_000,
    cache: false,
  });
  const verifyRefresh = async (token: string, now: number): Promise<Record<string, unknown>> =>
    crypto === 'in-place'
      ? (verifyInPlace(token) as Record<string, unknown>)
      : (
          await jwtVerify(token, publicKey, {
            algorithms: [alg],
            issuer,
            audience: issuer,
            typ: REFRESH_TYP,
            currentDate: new Date(now),
            clockTolerance: 5,
            requiredClaims: ['sub', 'exp', 'iat', 'jti', 'sid'],
          })
        ).payload;
  const signRefresh = (sid: string, iat: number) =>
    sign(REFRESH_TYP, { iss: issuer, sub: user.id, aud: issuer, exp: iat + 30 * 86_400, iat, jti: randomBytes(32).toString('base64url'), sid });
  const iat0 = Math.floor(Date.now() / 1000);
  const slots = await Promise.all(fs.sessionIds.map(async (sid) => ({ sid, token: await signRefresh(sid, iat0) })));
  let next = 0;
  const op = async () => {
    const slot = slots[next++ % slots.length]!;
    const now = Date.now();
    const payload = await verifyRefresh(slot.token, now);
    const { rows } = await fs.db.query('UPDATE sessions SET last_used_at = $2 WHERE id = $1 RETURNING *', [payload.sid, new Date(now)]);
    if (rows.length !== 1) throw new Error('floor UPDATE matched no row');
    const iat = Math.floor(now / 1000);
    const [, refresh] = await Promise.all([
      sign(ACCESS_TYP, { iss: issuer, sub: user.id, aud: 'tessera-api', exp: iat + 900, iat, jti: randomUUID(), sid: slot.sid, username: user.username, roles: user.roles }),
      signRefresh(slot.sid, iat),
    ]);
    slot.token = refresh;
  };
  return (warmupS) => closedLoop(CONNECTIONS, warmupS, FLOOR_S, op);
}

// ---------------------------------------------------------------- decomposition (--decompose)

interface StoreCost {
  name: string;
  statements: string;
  msPerOp: number;
  cpuMsPerOp: number;
  foreignCores: number;
}

/**
 * The server's own Store calls, one at a time on the floor store (PGlite runs them
 * one at a time anyway): what each PGlite round trip and each flow's writes cost.
 */
async function decompose(fs: FloorStore): Promise<StoreCost[]> {
  const store = new Store(fs.db);
  const client = { ip: '127.0.0.1', userAgent: 'bench' };
  const slots = fs.sessionIds.map((id) => ({ id, hash: '' }));
  // Give each floor session a refresh token whose hash we know.
  for (const slot of slots) {
    slot.hash = randomBytes(32).toString('base64url');
    await fs.db.query('UPDATE sessions SET refresh_hash = $1, refresh_issued_at = $3, refresh_expires_at = $4 WHERE id = $2', [
      slot.hash,
      slot.id,
      new Date(),
      new Date(Date.now() + 30 * DAY_MS),
    ]);
  }
  let i = 0;
  const cases: [string, string, () => Promise<unknown>][] = [
    ['SELECT 1', '1', () => fs.db.query('SELECT 1')],
    ['empty transaction', 'BEGIN, COMMIT', () => fs.db.transaction(async () => {})],
    [
      'floor UPDATE sessions … RETURNING *',
      '1',
      () => fs.db.query('UPDATE sessions SET last_used_at = $2 WHERE id = $1 RETURNING *', [slots[i++ % slots.length]!.id, new Date()]),
    ],
    ['Store.findUserByUsername (login)', '1', () => store.users.findByUsername(fs.user.username)],
    [
      'Store.createSession (login)',
      'BEGIN, SELECT … FOR UPDATE, 2 INSERT, COMMIT',
      () =>
        store.sessions.open({
          session: { id: randomUUID(), user: fs.user, client },
          token: { jtiHash: randomBytes(32).toString('base64url'), issuedAt: new Date(), expiresAt: new Date(Date.now() + 30 * DAY_MS) },
          single: false,
          now: new Date(),
        }),
    ],
    [
      'Store.rotateRefreshToken (refresh)',
      // migration 3: one statement. Before it: BEGIN, SELECT … FOR UPDATE, SELECT session+token+child+user,
      // WITH 2 UPDATE + INSERT, INSERT audit, COMMIT; before d0e289f: BEGIN, 3 SELECT, INSERT, 2 UPDATE, INSERT audit, COMMIT
      'WITH UPDATE sessions … WHERE refresh_hash = $2 + INSERT audit, SELECT (one statement)',
      async () => {
        const slot = slots[i++ % slots.length]!;
        const successor = randomBytes(32).toString('base64url');
        const now = new Date();
        const outcome = await store.sessions.rotate({
          sessionId: slot.id,
          jtiHash: slot.hash,
          successor: { jtiHash: successor, issuedAt: now, expiresAt: new Date(now.getTime() + 30 * DAY_MS) },
          now,
          graceMs: 10_000,
          client,
          decide: decideRotation,
        });
        if (outcome.kind !== 'rotated') throw new Error(`rotate: ${outcome.kind}`);
        slot.hash = successor;
      },
    ],
  ];
  const costs: StoreCost[] = [];
  for (const [name, statements, op] of cases) {
    await waitQuiet(`decompose ${name}`);
    const m = await closedLoop(1, 0.5, 2, async () => {
      await op();
    });
    costs.push({ name, statements, msPerOp: m.p50, cpuMsPerOp: m.cpuSelfMs, foreignCores: m.foreignCores! });
    log(`decompose: ${name}: p50 ${m.p50.toFixed(3)} ms, CPU ${m.cpuSelfMs.toFixed(3)} ms/op, other processes ${m.foreignCores!.toFixed(2)} cores`);
  }
  return costs;
}

// ---------------------------------------------------------------- one algorithm

interface AlgResult {
  alg: Alg;
  /** Whether this server started on a fresh data dir (PGlite runs initdb) or restarted on the previous one. */
  freshDataDir: boolean;
  startSeconds: number;
  /** VmRSS 3 s after the server listened, before any request. */
  idleRssMb: number;
  loadedRssMb: number;
  peakRssMb: number;
  registerSeconds: number;
  argon2Floor: Measured;
  login: Measured;
  refreshFloor: Measured;
  refresh: Measured;
  /** Diagnostic: the refresh floor with the server's own crypto (not the goal's floor). */
  refreshFloorInPlace: Measured;
  stderr: string;
}

async function benchAlg(alg: Alg, dataDir: string, fresh: boolean, floorStore: FloorStore, known: string[] | undefined) {
  log(`${alg}: starting tessera serve on ${fresh ? 'a fresh' : 'the existing'} data dir`);
  const server = await startServer(alg, dataDir);
  try {
    log(`${alg}: listening on ${server.url.origin} after ${server.startSeconds.toFixed(1)} s (pid ${server.pid}); idle 3 s`);
    await sleep(3000);
    const idleRssMb = procStatusMb(server.pid, 'VmRSS');

    let registerSeconds = 0;
    let users = known;
    if (!users) {
      const t = performance.now();
      users = await registerUsers(server, USERS, CONNECTIONS);
      registerSeconds = (performance.now() - t) / 1000;
      log(`${alg}: registered ${users.length} users in ${registerSeconds.toFixed(1)} s`);
    }

    const argon2 = await argon2Floor();
    await waitQuiet(`${alg} argon2id floor`);
    const a1 = await argon2(1);
    log(`${alg}: argon2id verify ${a1.perSecond.toFixed(0)}/s; login ${LOGIN_WARMUP_S} s warm-up + ${DURATION_S} s`);
    const sessions: SessionSlot[] = [];
    await waitQuiet(`${alg} login`);
    if (LOGIN_WARMUP_S > 0) await loginLoad(server, users, LOGIN_WARMUP_S, sessions);
    const login = await loginLoad(server, users, DURATION_S, sessions);
    await waitQuiet(`${alg} argon2id floor`);
    const a2 = await argon2(0.5);
    log(`${alg}: login ${login.perSecond.toFixed(0)}/s, argon2id verify after ${a2.perSecond.toFixed(0)}/s (${sessions.length} sessions open)`);
    if (sessions.length < SESSIONS) await topUpSessions(server, users, sessions, SESSIONS);

    const floor = await refreshFloor(floorStore, alg);
    await waitQuiet(`${alg} refresh floor`);
    const r1 = await floor(1);
    log(`${alg}: refresh floor ${r1.perSecond.toFixed(0)}/s; refresh ${WARMUP_S} s warm-up + ${DURATION_S} s over ${SESSIONS} sessions`);
    const free = sessions.slice(-SESSIONS);
    await waitQuiet(`${alg} refresh`);
    if (WARMUP_S > 0) await refreshLoad(server, free, WARMUP_S);
    const refresh = await refreshLoad(server, free, DURATION_S);
    await waitQuiet(`${alg} refresh floor`);
    const r2 = await floor(0.5);
    log(`${alg}: refresh ${refresh.perSecond.toFixed(0)}/s, floor after ${r2.perSecond.toFixed(0)}/s`);
    const inPlace = await refreshFloor(floorStore, alg, 'in-place');
    await waitQuiet(`${alg} refresh floor, in-place crypto`);
    const refreshFloorInPlace = await inPlace(0.5);
    log(`${alg}: refresh floor with the server's in-place crypto ${refreshFloorInPlace.perSecond.toFixed(0)}/s`);

    const result: AlgResult = {
      alg,
      freshDataDir: fresh,
      startSeconds: server.startSeconds,
      idleRssMb,
      loadedRssMb: procStatusMb(server.pid, 'VmRSS'),
      peakRssMb: procStatusMb(server.pid, 'VmHWM'),
      registerSeconds,
      argon2Floor: bracket(a1, a2),
      login,
      refreshFloor: bracket(r1, r2),
      refresh,
      refreshFloorInPlace,
      stderr: server.stderr.join(''),
    };
    return { result, users };
  } finally {
    await stopServer(server);
  }
}

// ---------------------------------------------------------------- report

/** Projects `tsc -b` would rebuild (the server child runs packages/cli/dist), from `tsc -b --dry`. */
function staleDist(): string[] {
  try {
    const out = execFileSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-b', '--dry', '--verbose', 'packages/cli'], {
      cwd: ROOT,
      encoding: 'utf8',
    });
    return [...out.matchAll(/Project '([^']+)' is out of date/g)].map((m) => m[1]!);
  } catch (error) {
    return [`(tsc -b --dry failed: ${(error as Error).message.split('\n')[0]})`];
  }
}

const fmt = (digits: number) => (n: number | undefined) => (n !== undefined && Number.isFinite(n) ? n.toFixed(digits) : 'n/a');
const f0 = fmt(0);
const f1 = fmt(1);
const f2 = fmt(2);
const met = (ok: boolean) => (ok ? 'yes' : '**no**');

function table(results: AlgResult[]): string {
  const rows = ['| Figure | Server (`tessera serve`) | Floor, same run | Ratio | Goal | Met |', '|---|---:|---:|---:|---|---|'];
  for (const r of results) {
    const ratio = r.login.perSecond / r.argon2Floor.perSecond;
    rows.push(`| Login req/s (${r.alg} server) | ${f0(r.login.perSecond)} | ${f0(r.argon2Floor.perSecond)} argon2id verify/s | ${f2(ratio)} | ≥ 0.90 | ${met(ratio >= 0.9)} |`);
  }
  for (const r of results) {
    const ratio = r.refresh.perSecond / r.refreshFloor.perSecond;
    rows.push(`| Refresh req/s (${r.alg}) | ${f0(r.refresh.perSecond)} | ${f0(r.refreshFloor.perSecond)} verify+UPDATE+2 signs/s | ${f2(ratio)} | ≥ 0.85 | ${met(ratio >= 0.85)} |`);
  }
  for (const r of results) rows.push(`| Login p50 / p99 ms (${r.alg}) | ${f1(r.login.p50)} / ${f1(r.login.p99)} | ${f1(r.argon2Floor.p50)} / ${f1(r.argon2Floor.p99)} | | | |`);
  for (const r of results) rows.push(`| Refresh p50 / p99 ms (${r.alg}) | ${f1(r.refresh.p50)} / ${f1(r.refresh.p99)} | ${f1(r.refreshFloor.p50)} / ${f1(r.refreshFloor.p99)} | | | |`);
  for (const r of results) {
    const how = r.freshDataDir ? 'first start, fresh data dir' : 'restart on existing data dir';
    rows.push(`| Idle RSS MB (${r.alg} server, ${how}) | ${f0(r.idleRssMb)} | | | ≤ 200 | ${met(r.idleRssMb <= 200)} |`);
  }
  return rows.join('\n');
}

function diagnostics(results: AlgResult[]): string {
  const rows = [
    '| Phase | ok/s | failed | server CPU ms/op | server main thread on CPU | server other threads on CPU | this process CPU ms/op | other processes on CPU | notes |',
    '|---|---:|---:|---:|---:|---:|---:|---:|---|',
  ];
  const pct = (n: number | undefined) => (n === undefined ? '' : Number.isFinite(n) ? `${(n * 100).toFixed(0)}%` : 'n/a');
  const line = (name: string, m: Measured, notes = '') =>
    rows.push(
      `| ${name} | ${f0(m.perSecond)} | ${m.failed} | ${m.cpuServerMs === undefined ? '' : f2(m.cpuServerMs)} | ${pct(m.serverMainBusy)} | ${pct(m.serverOtherBusy)} | ${f2(m.cpuSelfMs)} | ${pct(m.foreignCores)} | ${notes} |`,
    );
  const halves = (m: Measured) => (m.halves ? `before ${f0(m.halves[0])}/s, after ${f0(m.halves[1])}/s` : '');
  const cpuRatio = (floor: Measured, http: Measured) => floor.cpuSelfMs / (http.cpuServerMs! + http.cpuSelfMs);
  for (const r of results) {
    line(`argon2id verify floor (${r.alg} run)`, r.argon2Floor, halves(r.argon2Floor));
    line(`login, ${r.alg}`, r.login, `CPU-normalised ratio ${f2(cpuRatio(r.argon2Floor, r.login))}`);
    line(`refresh floor, ${r.alg}`, r.refreshFloor, halves(r.refreshFloor));
    const e = r.refresh.extra ?? {};
    line(`refresh, ${r.alg}`, r.refresh, `CPU-normalised ratio ${f2(cpuRatio(r.refreshFloor, r.refresh))}; replays ${e.replays}, starved ${e.starved}`);
    line(
      `refresh floor with the server's in-place crypto, ${r.alg} (diagnostic)`,
      r.refreshFloorInPlace,
      `refresh ÷ this ${f2(r.refresh.perSecond / r.refreshFloorInPlace.perSecond)}`,
    );
  }
  const servers = results.map(
    (r) =>
      `- ${r.alg}: ${r.freshDataDir ? 'fresh data dir' : 'existing data dir'}, listening after ${f1(r.startSeconds)} s; idle ${f0(r.idleRssMb)} MB, ` +
      `after the load ${f0(r.loadedRssMb)} MB, peak ${f0(r.peakRssMb)} MB` +
      (r.registerSeconds ? `; ${USERS} users registered in ${f1(r.registerSeconds)} s` : ''),
  );
  return `${rows.join('\n')}\n\nCPU-normalised ratio = floor CPU ms/op ÷ (server + load generator CPU ms/op).\n\n${servers.join('\n')}`;
}

/** How busy the rest of the machine was while we measured: the figures assume nothing else ran. */
function quietness(results: AlgResult[]): string {
  const phases = results.flatMap((r) =>
    (['argon2Floor', 'login', 'refreshFloor', 'refresh'] as const).map((k) => ({ name: `${k} ${r.alg}`, cores: r[k].foreignCores ?? Number.NaN })),
  );
  const worst = phases.reduce((a, b) => (b.cores > a.cores ? b : a), { name: 'none', cores: 0 });
  const text = `other processes on CPU during the measured windows: at most ${worst.cores.toFixed(2)} cores (${worst.name})`;
  return worst.cores > 0.1 ? `WARNING: ${text}; this run's ratios are not trustworthy, run again on a quiet machine` : `Quiet machine: ${text}`;
}

async function main() {
  if (!existsSync(CLI)) throw new Error(`${relative(ROOT, CLI)} is missing: run npm run build first`);
  const stale = staleDist();
  if (stale.length) log(`WARNING: tsc -b would rebuild ${stale.join(', ')}: run npm run build to bench the current sources`);
  if (args['cpu-prof']) log(`server CPU profiles go to ${args['cpu-prof']}: profiling slows the server, do not quote these figures`);
  const startedAt = new Date();

  log(`floor store: PGlite in a temp data dir, migrate, ${SESSIONS} sessions`);
  const floorStore = await openFloorStore(SESSIONS);
  const dataDir = await tempDir('tessera-bench-server-');
  const results: AlgResult[] = [];
  let costs: StoreCost[] = [];
  try {
    let users: string[] | undefined;
    for (const [i, alg] of ALGS.entries()) {
      const run = await benchAlg(alg, dataDir, i === 0, floorStore, users);
      users = run.users;
      results.push(run.result);
    }
    if (args.decompose) costs = await decompose(floorStore);
  } finally {
    await floorStore.db.close().catch(() => {});
    await rm(floorStore.dir, { recursive: true, force: true });
    await rm(dataDir, { recursive: true, force: true });
  }
  const seconds = (performance.now() - T0) / 1000;

  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const header = [
    `Date: ${startedAt.toISOString()}; total run time ${seconds.toFixed(0)} s`,
    `Machine: nproc ${os.availableParallelism()} (${cpu}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Node ${process.version}, ${os.type()} ${os.release()}`,
    `Settings: ${CONNECTIONS} connections / ops in flight; HTTP phases ${DURATION_S} s after a warm-up of ${LOGIN_WARMUP_S} s (login) and ${WARMUP_S} s (refresh); floors ${FLOOR_S} s before + ${FLOOR_S} s after their HTTP phase; ${USERS} users; ${SESSIONS} refresh sessions`,
    ...(stale.length ? [`WARNING: dist was stale (tsc -b would rebuild ${stale.join(', ')})`] : []),
    quietness(results),
  ];
  let out = `${header.join('\n')}\n\n${table(results)}\n\nDiagnostics\n\n${diagnostics(results)}\n`;
  if (costs.length) {
    out += '\nStore calls on PGlite, one at a time (--decompose)\n\n| Call | PGlite round trips | p50 ms | CPU ms/op | other processes on CPU |\n|---|---|---:|---:|---:|\n';
    out += costs
      .map((c) => `| ${c.name} | ${c.statements} | ${c.msPerOp.toFixed(3)} | ${c.cpuMsPerOp.toFixed(3)} | ${(c.foreignCores * 100).toFixed(0)}% |`)
      .join('\n');
    out += '\n';
  }
  for (const r of results) if (r.stderr.trim()) out += `\nServer ${r.alg} stderr:\n${r.stderr.trim()}\n`;
  process.stdout.write(out);
  if (args.json) {
    const machine = { nproc: os.availableParallelism(), cpu, node: process.version };
    await writeFile(args.json, `${JSON.stringify({ startedAt, seconds, machine, args, results, costs }, null, 2)}\n`);
  }
}

await main();
