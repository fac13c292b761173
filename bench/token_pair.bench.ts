/**
 * Token-pair benchmark: login and refresh throughput of a real `tessera serve`
 * child process, each against its floor measured in this same run, plus p50/p99
 * latency and the RSS of an idle server.
 *
 *   node --conditions=source --import tsx bench/token_pair.bench.ts [options]
 *
 * Options (all optional):
 *   --duration S         measured seconds per HTTP phase            (default 10)
 *   --warmup S           unmeasured seconds before each HTTP phase  (default 2)
 *   --floor-duration S   measured seconds per floor                 (default 5)
 *   --connections N      autocannon connections = floor concurrency (default 8)
 *   --users N            distinct users registered before login     (default 400)
 *   --sessions N         sessions rotated by the refresh phase      (default 256)
 *   --algs A,B           signing algorithms                         (default RS256,EdDSA)
 *   --json FILE          also write the raw results as JSON
 *   --cpu-prof DIR       run the server child with --cpu-prof into DIR (investigation only)
 *
 * Load generator: autocannon 8 in this process, `requests: [{ setupRequest, onResponse }]`.
 * Floors run in this process too, at the same concurrency, while the server child is idle.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join, relative } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { hash, verify } from '@node-rs/argon2';
import { migrate, openPgliteDatabase } from '@tessera/server';
// autocannon ships no types; it is a CommonJS function returning a promise when given no callback.
import autocannonModule from 'autocannon';
import { generateKeyPair, jwtVerify, SignJWT } from 'jose';

// ---------------------------------------------------------------- options

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'packages/cli/dist/bin.js');

const { values: args } = parseArgs({
  options: {
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '2' },
    'floor-duration': { type: 'string', default: '5' },
    connections: { type: 'string', default: '8' },
    users: { type: 'string', default: '400' },
    sessions: { type: 'string', default: '256' },
    algs: { type: 'string', default: 'RS256,EdDSA' },
    json: { type: 'string' },
    'cpu-prof': { type: 'string' },
  },
});
const DURATION_S = Number(args.duration);
const WARMUP_S = Number(args.warmup);
const FLOOR_S = Number(args['floor-duration']);
const CONNECTIONS = Number(args.connections);
const USERS = Number(args.users);
const SESSIONS = Number(args.sessions);
const ALGS = args.algs!.split(',') as Alg[];
type Alg = 'RS256' | 'EdDSA' | 'ES256' | 'PS256';

/** The server's parameters (packages/server/src/lib/passwords.ts). `2` = Argon2id. */
const ARGON2ID = { algorithm: 2, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;
const PASSWORD = 'correct horse battery staple';
const RATE_LIMIT = 'ip=1000000/1m,user=1000000/1m';
const ACCESS_TYP = 'at+jwt';
const REFRESH_TYP = 'refresh+jwt';

// ---------------------------------------------------------------- helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => process.stderr.write(`[bench ${((performance.now() - T0) / 1000).toFixed(1)}s] ${msg}\n`);
const T0 = performance.now();

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

interface Measured {
  /** Successful operations (HTTP 2xx) per second of the measured window. */
  perSecond: number;
  ok: number;
  failed: number;
  seconds: number;
  p50: number;
  p99: number;
  /** CPU ms per successful op: this process (load generator or floor) and, for HTTP, the server. */
  cpuSelfMs: number;
  cpuServerMs?: number;
  /** Share of one core the server's main (event-loop) thread was busy. */
  serverMainBusy?: number;
  /** Share of one core the server's other threads (libuv pool: argon2, WebCrypto; V8 GC) were busy. */
  serverOtherBusy?: number;
  extra?: Record<string, number>;
}

const CLK_TCK = 100; // Linux USER_HZ

/** utime+stime in ms of a process (and of its main thread) from /proc. */
function procCpuMs(pid: number): { total: number; main: number } {
  const ticks = (path: string) => {
    const stat = readFileSync(path, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14, 15)
  };
  return {
    total: (ticks(`/proc/${pid}/stat`) * 1000) / CLK_TCK,
    main: (ticks(`/proc/${pid}/task/${pid}/stat`) * 1000) / CLK_TCK,
  };
}

function procStatusKb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  return m ? Number(m[1]) : Number.NaN;
}

const selfCpuMs = () => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/**
 * Runs `op` in `concurrency` closed loops: `warmupS` unmeasured, then `durationS`
 * measured (ops that complete inside the window count; latency per op).
 */
async function closedLoop(concurrency: number, warmupS: number, durationS: number, op: (worker: number) => Promise<void>): Promise<Measured> {
  const start = performance.now();
  const from = start + warmupS * 1000;
  const until = from + durationS * 1000;
  const latencies: number[] = [];
  let cpuFrom = 0;
  let cpuUntil = 0;
  let marked = false;
  const markTimer = setTimeout(() => {
    cpuFrom = selfCpuMs();
    marked = true;
  }, warmupS * 1000);
  const endTimer = setTimeout(() => {
    cpuUntil = selfCpuMs();
  }, (warmupS + durationS) * 1000);
  const worker = async (w: number) => {
    while (performance.now() < until) {
      const t = performance.now();
      await op(w);
      const end = performance.now();
      if (t >= from && end <= until) latencies.push(end - t);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  clearTimeout(markTimer);
  clearTimeout(endTimer);
  if (!marked || cpuUntil === 0) throw new Error('closedLoop: timers did not fire');
  latencies.sort((a, b) => a - b);
  return {
    perSecond: latencies.length / durationS,
    ok: latencies.length,
    failed: 0,
    seconds: durationS,
    p50: percentile(latencies, 50),
    p99: percentile(latencies, 99),
    cpuSelfMs: (cpuUntil - cpuFrom) / latencies.length,
  };
}

// ---------------------------------------------------------------- server child

interface Server {
  child: ChildProcess;
  pid: number;
  url: URL;
  dataDir: string;
  issuer: string;
  stderr: string[];
}

async function startServer(alg: Alg, existingDataDir?: string): Promise<Server> {
  const dataDir = existingDataDir ?? (await mkdtemp(join(os.tmpdir(), `tessera-bench-${alg}-`)));
  const nodeFlags = args['cpu-prof'] ? ['--cpu-prof', `--cpu-prof-dir=${args['cpu-prof']}`, `--cpu-prof-name=server-${alg}-${Date.now()}.cpuprofile`] : [];
  const child = spawn(
    process.execPath,
    [...nodeFlags, CLI, 'serve', '--port', '0', '--data-dir', dataDir, '--alg', alg, '--rate-limit', RATE_LIMIT, '--log-level', 'silent'],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (s: string) => stderr.push(s));
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`server did not listen within 60 s: ${out}${stderr.join('')}`)), 60_000);
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const m = out.match(/listening on (\S+) \(issuer (\S+)\)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[0]);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code}: ${out}${stderr.join('')}`));
    });
  }).catch(async (error) => {
    if (!existingDataDir) await rm(dataDir, { recursive: true, force: true });
    throw error;
  });
  const [, url, issuer] = line.match(/listening on (\S+) \(issuer (\S+)\)/)!;
  return { child, pid: child.pid!, url: new URL(url!), dataDir, issuer: issuer!, stderr };
}

async function stopServer(server: Server, keepDataDir = false): Promise<void> {
  if (server.child.exitCode === null) {
    const exited = new Promise<void>((r) => server.child.once('exit', () => r()));
    server.child.kill('SIGTERM');
    const timer = setTimeout(() => server.child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
  if (!keepDataDir) await rm(server.dataDir, { recursive: true, force: true });
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
      if (res.status !== 201) throw new Error(`register ${username}: ${res.status} ${await res.text()}`);
      await res.arrayBuffer().catch(() => {});
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return names;
}

// ---------------------------------------------------------------- HTTP load (autocannon)

// biome-ignore lint/suspicious/noExplicitAny: untyped CommonJS module
const autocannon = autocannonModule as unknown as (opts: any) => Promise<any>;

interface Ctx {
  t0?: number;
  session?: SessionSlot;
}
interface SessionSlot {
  token: string;
}

/**
 * One autocannon run of `seconds` against the server with a single dynamic
 * request; `setup` fills the request per send, `done` sees each response.
 * Latency is measured here, setupRequest -> onResponse, with sub-ms resolution.
 */
async function httpRun(
  server: Server,
  seconds: number,
  request: { method: string; path: string; headers: Record<string, string> },
  setup: (req: Record<string, unknown>, ctx: Ctx) => Record<string, unknown> | null,
  done: (status: number, body: string, ctx: Ctx) => boolean,
): Promise<Measured & { autocannon: { p50: number; p99: number; non2xx: number; errors: number; timeouts: number } }> {
  const latencies: number[] = [];
  let ok = 0;
  let failed = 0;
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
    autocannon: {
      p50: result.latency.p50,
      p99: result.latency.p99,
      non2xx: result.non2xx,
      errors: result.errors,
      timeouts: result.timeouts,
    },
  };
}

/** Logs in round-robin over `users`; keeps the refresh token of every session opened. */
function loginLoad(server: Server, users: string[], seconds: number, sessions: SessionSlot[]) {
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
 * Refreshes: each request takes the session at the head of the free queue (its
 * newest refresh token is not in flight), and its response's refresh token goes
 * back to the tail. A response carrying a refresh token seen before would be a
 * grace-window replay; those are counted and must be 0.
 */
async function refreshLoad(server: Server, free: SessionSlot[], seconds: number) {
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
  return { ...measured, extra: { replays, starved, sessionsLeft: free.length } };
}

// ---------------------------------------------------------------- floors

/** argon2id verify (the server's parameters) at `concurrency` in flight, in this process. */
async function argon2Floor(concurrency: number): Promise<Measured> {
  const stored = await hash(PASSWORD, ARGON2ID);
  return closedLoop(concurrency, 1, FLOOR_S, async () => {
    if (!(await verify(stored, PASSWORD))) throw new Error('argon2 verify failed');
  });
}

/**
 * verify + one `UPDATE … RETURNING` + two signs: jose jwtVerify of a refresh token,
 * one autocommitted UPDATE of the session row on embedded PGlite in a data dir
 * (the server's schema, via migrate), and two jose SignJWT (access + refresh), the
 * same claims and headers as the server's. `concurrency` in flight.
 */
async function refreshFloor(alg: Alg, concurrency: number, sessionCount: number): Promise<Measured> {
  const dir = await mkdtemp(join(os.tmpdir(), `tessera-bench-floor-${alg}-`));
  const db = await openPgliteDatabase(join(dir, 'db'));
  try {
    await migrate(db);
    const { publicKey, privateKey } = await generateKeyPair(alg);
    const kid = randomBytes(32).toString('base64url').slice(0, 43);
    const issuer = 'http://localhost:40000';
    const userId = randomUUID();
    const now = new Date();
    await db.query(
      `INSERT INTO users (id, username, password_hash, roles, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $5)`,
      [userId, 'floor-user', 'x', [], now],
    );
    const signRefresh = (sid: string, iat: number) =>
      new SignJWT({ iss: issuer, sub: userId, aud: issuer, exp: iat + 30 * 86400, iat, jti: randomBytes(32).toString('base64url'), sid })
        .setProtectedHeader({ alg, kid, typ: REFRESH_TYP })
        .sign(privateKey);
    const slots: { sid: string; token: string }[] = [];
    for (let i = 0; i < sessionCount; i++) {
      const sid = randomUUID();
      await db.query(
        `INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip) VALUES ($1, $2, $3, $3, $4, $5, $6)`,
        [sid, userId, now, new Date(now.getTime() + 30 * 86400_000), 'autocannon', '127.0.0.1'],
      );
      slots.push({ sid, token: await signRefresh(sid, Math.floor(now.getTime() / 1000)) });
    }
    let next = 0;
    return await closedLoop(concurrency, 1, FLOOR_S, async () => {
      const slot = slots[next++ % slots.length]!;
      const t = Date.now();
      const { payload } = await jwtVerify(slot.token, publicKey, {
        algorithms: [alg],
        issuer,
        audience: issuer,
        typ: REFRESH_TYP,
        currentDate: new Date(t),
        clockTolerance: 5,
        requiredClaims: ['sub', 'exp', 'iat', 'jti', 'sid'],
      });
      const expiresAt = new Date(t + 30 * 86400_000);
      const { rows } = await db.query<{ id: string }>(
        'UPDATE sessions SET last_used_at = $2, expires_at = $3 WHERE id = $1 RETURNING *',
        [payload.sid, new Date(t), expiresAt],
      );
      if (rows.length !== 1) throw new Error('floor UPDATE matched no row');
      const iat = Math.floor(t / 1000);
      const [, refresh] = await Promise.all([
        new SignJWT({ iss: issuer, sub: userId, aud: 'tessera-api', exp: iat + 900, iat, jti: randomUUID(), sid: slot.sid, username: 'floor-user', roles: [] })
          .setProtectedHeader({ alg, kid, typ: ACCESS_TYP })
          .sign(privateKey),
        signRefresh(slot.sid, iat),
      ]);
      slot.token = refresh;
    });
  } finally {
    await db.close();
    await rm(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- one algorithm

interface AlgResult {
  alg: Alg;
  /** 3 s after listening, first start: a fresh data dir (PGlite runs initdb). */
  idleRssMb: number;
  /** 3 s after listening, restarted on the data dir the load left behind. */
  restartIdleRssMb: number;
  startSeconds: number;
  restartSeconds: number;
  loadedRssMb: number;
  hwmRssMb: number;
  registerSeconds: number;
  argon2Floor: Measured;
  login: Measured;
  refreshFloor: Measured;
  refresh: Measured;
  stderr: string;
}

async function benchAlg(alg: Alg): Promise<AlgResult> {
  log(`${alg}: starting tessera serve`);
  const tStart = performance.now();
  const server = await startServer(alg);
  const startSeconds = (performance.now() - tStart) / 1000;
  let stopped = false;
  try {
    log(`${alg}: listening on ${server.url.origin} (pid ${server.pid}); idle 3 s`);
    await sleep(3000);
    const idleRssMb = procStatusKb(server.pid, 'VmRSS') / 1024;

    const t = performance.now();
    const users = await registerUsers(server, USERS, CONNECTIONS);
    const registerSeconds = (performance.now() - t) / 1000;
    log(`${alg}: registered ${users.length} users in ${registerSeconds.toFixed(1)} s; argon2id floor`);

    const floorA = await argon2Floor(CONNECTIONS);
    log(`${alg}: argon2id verify ${floorA.perSecond.toFixed(0)}/s; login warm-up + ${DURATION_S} s`);
    const sessions: SessionSlot[] = [];
    if (WARMUP_S > 0) await loginLoad(server, users, WARMUP_S, sessions);
    const login = await loginLoad(server, users, DURATION_S, sessions);
    log(`${alg}: login ${login.perSecond.toFixed(0)}/s (${sessions.length} sessions open); refresh floor`);

    const floorR = await refreshFloor(alg, CONNECTIONS, SESSIONS);
    log(`${alg}: refresh floor ${floorR.perSecond.toFixed(0)}/s; refresh warm-up + ${DURATION_S} s over ${SESSIONS} sessions`);
    const free = sessions.slice(0, SESSIONS);
    if (free.length < SESSIONS) throw new Error(`only ${free.length} sessions to refresh`);
    if (WARMUP_S > 0) await refreshLoad(server, free, WARMUP_S);
    const refresh = await refreshLoad(server, free, DURATION_S);
    log(`${alg}: refresh ${refresh.perSecond.toFixed(0)}/s`);
    const loadedRssMb = procStatusKb(server.pid, 'VmRSS') / 1024;
    const hwmRssMb = procStatusKb(server.pid, 'VmHWM') / 1024;
    const stderr = server.stderr.join('');

    log(`${alg}: restarting on the same data dir; idle 3 s`);
    await stopServer(server, true);
    stopped = true;
    const tRestart = performance.now();
    const again = await startServer(alg, server.dataDir);
    const restartSeconds = (performance.now() - tRestart) / 1000;
    await sleep(3000);
    const restartIdleRssMb = procStatusKb(again.pid, 'VmRSS') / 1024;
    await stopServer(again);
    return {
      alg,
      idleRssMb,
      restartIdleRssMb,
      startSeconds,
      restartSeconds,
      loadedRssMb,
      hwmRssMb,
      registerSeconds,
      argon2Floor: floorA,
      login,
      refreshFloor: floorR,
      refresh,
      stderr: stderr + again.stderr.join(''),
    };
  } finally {
    if (!stopped) await stopServer(server);
    else await rm(server.dataDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------- report

function staleDist(): string[] {
  const stale: string[] = [];
  for (const pkg of ['protocol', 'server', 'cli']) {
    const src = join(ROOT, 'packages', pkg, 'src');
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        const path = join(dir, name);
        if (statSync(path).isDirectory()) walk(path);
        else if (name.endsWith('.ts') && !name.endsWith('.test.ts')) {
          const out = path.replace(`${join('packages', pkg, 'src')}`, join('packages', pkg, 'dist')).replace(/\.ts$/, '.js');
          if (!existsSync(out) || statSync(out).mtimeMs < statSync(path).mtimeMs) stale.push(relative(ROOT, path));
        }
      }
    };
    walk(src);
  }
  return stale;
}

const f0 = (n: number) => (Number.isFinite(n) ? n.toFixed(0) : 'n/a');
const f1 = (n: number) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
const f2 = (n: number) => (Number.isFinite(n) ? n.toFixed(2) : 'n/a');
const met = (ok: boolean) => (ok ? 'yes' : '**no**');

function table(results: AlgResult[]): string {
  const rows: string[] = [
    '| Figure | Server (tessera serve) | Floor, same run | Ratio | Goal | Met |',
    '|---|---:|---:|---:|---|---|',
  ];
  for (const r of results) {
    const ratio = r.login.perSecond / r.argon2Floor.perSecond;
    rows.push(
      `| Login req/s, ${r.alg} server | ${f0(r.login.perSecond)} | ${f0(r.argon2Floor.perSecond)} argon2id verify/s | ${f2(ratio)} | ≥ 0.90 | ${met(ratio >= 0.9)} |`,
    );
  }
  for (const r of results) {
    const ratio = r.refresh.perSecond / r.refreshFloor.perSecond;
    rows.push(
      `| Refresh req/s, ${r.alg} | ${f0(r.refresh.perSecond)} | ${f0(r.refreshFloor.perSecond)} verify+UPDATE+2 signs/s | ${f2(ratio)} | ≥ 0.85 | ${met(ratio >= 0.85)} |`,
    );
  }
  for (const r of results) {
    rows.push(`| Login p50 / p99 ms, ${r.alg} | ${f1(r.login.p50)} / ${f1(r.login.p99)} | ${f1(r.argon2Floor.p50)} / ${f1(r.argon2Floor.p99)} | | | |`);
  }
  for (const r of results) {
    rows.push(`| Refresh p50 / p99 ms, ${r.alg} | ${f1(r.refresh.p50)} / ${f1(r.refresh.p99)} | ${f1(r.refreshFloor.p50)} / ${f1(r.refreshFloor.p99)} | | | |`);
  }
  for (const r of results) {
    rows.push(`| Idle RSS MB, ${r.alg} server, first start (fresh data dir) | ${f0(r.idleRssMb)} | | | ≤ 150 | ${met(r.idleRssMb <= 150)} |`);
    rows.push(`| Idle RSS MB, ${r.alg} server, restart (existing data dir) | ${f0(r.restartIdleRssMb)} | | | ≤ 150 | ${met(r.restartIdleRssMb <= 150)} |`);
  }
  return rows.join('\n');
}

function diagnostics(results: AlgResult[]): string {
  const rows: string[] = [
    '| Phase | ok/s | failed | server CPU ms/op | server main thread busy | server other threads busy | load-gen/floor CPU ms/op | notes |',
    '|---|---:|---:|---:|---:|---:|---:|---|',
  ];
  const pct = (n: number | undefined) => (n === undefined ? '' : `${(n * 100).toFixed(0)}%`);
  for (const r of results) {
    const line = (name: string, m: Measured, notes = '') =>
      rows.push(
        `| ${name} | ${f0(m.perSecond)} | ${m.failed} | ${m.cpuServerMs === undefined ? '' : f2(m.cpuServerMs)} | ${pct(m.serverMainBusy)} | ${pct(m.serverOtherBusy)} | ${f2(m.cpuSelfMs)} | ${notes} |`,
      );
    line(`argon2id floor (${r.alg} run)`, r.argon2Floor);
    line(`login ${r.alg}`, r.login);
    line(`refresh floor ${r.alg}`, r.refreshFloor);
    const e = r.refresh.extra ?? {};
    line(`refresh ${r.alg}`, r.refresh, `replays ${e.replays}, starved ${e.starved}`);
  }
  const rss = results
    .map(
      (r) =>
        `${r.alg}: idle ${f0(r.idleRssMb)} MB (start ${f1(r.startSeconds)} s), after load ${f0(r.loadedRssMb)} MB, peak ${f0(r.hwmRssMb)} MB, ` +
        `restart idle ${f0(r.restartIdleRssMb)} MB (start ${f1(r.restartSeconds)} s); ${USERS} users registered in ${f1(r.registerSeconds)} s`,
    )
    .join('\n');
  return `${rows.join('\n')}\n\nServer processes:\n${rss}`;
}

async function main() {
  if (!existsSync(CLI)) throw new Error(`${relative(ROOT, CLI)} is missing: run npm run build first`);
  const stale = staleDist();
  if (stale.length) log(`WARNING: dist older than src for ${stale.join(', ')} (run npm run build to bench the current sources)`);
  if (args['cpu-prof']) log(`server CPU profiles go to ${args['cpu-prof']} (profiling slows the server: do not quote these figures)`);

  const startedAt = new Date();
  const results: AlgResult[] = [];
  for (const alg of ALGS) results.push(await benchAlg(alg));
  const seconds = (performance.now() - T0) / 1000;

  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  const header = [
    `Date: ${startedAt.toISOString()}; run time ${seconds.toFixed(0)} s`,
    `Machine: ${os.availableParallelism()} CPUs (${cpu}), ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB, Node ${process.version}, ${os.type()} ${os.release()}`,
    `Settings: ${CONNECTIONS} connections / in flight, ${DURATION_S} s measured HTTP phases after ${WARMUP_S} s warm-up, ${FLOOR_S} s floors, ${USERS} users, ${SESSIONS} refresh sessions`,
    stale.length ? `WARNING: dist was older than src for ${stale.join(', ')}` : '',
  ].filter(Boolean);
  process.stdout.write(`${header.join('\n')}\n\n${table(results)}\n\nDiagnostics\n\n${diagnostics(results)}\n`);
  for (const r of results) if (r.stderr.trim()) process.stdout.write(`\nserver ${r.alg} stderr:\n${r.stderr}\n`);
  if (args.json) await writeFile(args.json, `${JSON.stringify({ startedAt, seconds, machine: { cpus: os.availableParallelism(), cpu, node: process.version }, results }, null, 2)}\n`);
}

await main();
