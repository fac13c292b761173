/**
 * Verify benchmark: what `@tessera/verify` costs per access token, as shipped, against
 * the raw `node:crypto` ceiling and against the libraries people would use instead,
 * all measured in this one run on this one machine. Prints markdown on stdout
 * (progress on stderr).
 *
 *   node --conditions=tessera-source --import tsx bench/verify.bench.ts [options]
 *
 * What is "ours": `createVerifier` from `@tessera/verify`, which on Node picks the
 * Node engine (`nodeEngine`: fast-jwt, one verifier per JWKS key, synchronous
 * node:crypto) through the package's `#key-verifier` import; `createVerifierWith(
 * joseEngine, …)`, the portable engine (jose on WebCrypto) that other runtimes get;
 * and `createVerifier` with the opt-in verified-token cache (`cache: 10_000`).
 * Every verifier's `engine` is checked to be the one its row claims.
 *
 * Part 1, in this process (pinned to one CPU, every thread of it, so the libuv
 * threadpool that WebCrypto uses shares that CPU): ops/s of one token verified over
 * and over, one at a time ("seq") and with 16 in flight ("16"). Every variant runs
 * for `--slice` ms per round, `--rounds` rounds, in a rotated order; a row shows the
 * median ops/s over the rounds, the CPU µs per op (all threads), and the median of
 * the per-round ratios to the raw `crypto.verify` ceiling of the same round. The
 * cache rows verify the same token every call, so every call after the first is a
 * cache hit: they are the group 'cache', reported apart from the no-cache goal.
 *
 * Part 2, over HTTP: each server runs in its own child process (this file with
 * `--serve KIND`) pinned to CPU 0 (all its threads); autocannon runs in this process
 * pinned to CPU 1; `--connections` connections, GET /api/profile with a Bearer RS256
 * token (one token, so with a cache on every request is a hit: the best case). All
 * servers start first; then one load at a time, in two passes of `--duration`/2 s
 * each (after `--warmup` s unmeasured), the second pass in reverse order. Ours is
 * compared with @fastify/jwt in the same cache setting (off with off, on with on)
 * and with Express + jsonwebtoken with a PEM string.
 *
 * Tokens come from real in-process auth servers (`@tessera/server`, memory://),
 * one per algorithm, which are closed before anything is measured; verifiers get
 * the JWKS those servers served (through `createVerifier`'s `fetch` option).
 *
 * Before anything is measured, a self-test checks that the Node engine, the jose
 * engine and the Node engine with the cache accept and refuse the same tokens with
 * the same error codes (17 cases per algorithm); the run stops if they disagree.
 *
 * Options: --algs RS256,ES256,EdDSA  --rounds 5  --slice 200 (ms)  --duration 8
 *   --warmup 1  --connections 10  --http-kinds LIST  --no-pin  --skip-micro
 *   --skip-http  --quiet-wait 5 (s, in all, waiting for other processes to leave
 *   the CPU before a measured phase)  --json FILE
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHmac, createPublicKey, verify as cryptoVerify, webcrypto } from 'node:crypto';
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TesseraError } from '@tessera/protocol';
import { createVerifier, type Verifier, type VerifierOptions } from '@tessera/verify';
import { type CryptoKey, importJWK, type JWK, jwtVerify } from 'jose';
import { createVerifierWith } from '../packages/verify/src/create_verifier.js';
import { joseEngine } from '../packages/verify/src/jose_key_verifier.js';
import { median } from './lib/percentiles.js';
import { machineTicks, pidJiffies } from './lib/proc_cpu.js';
import { waitForQuiet } from './lib/quiet.js';

type Alg = 'RS256' | 'ES256' | 'EdDSA';
const ISSUER = 'http://localhost:4000';
const AUDIENCE = 'tessera-api';
const CLOCK_TOLERANCE_S = 5;
const REQUIRED_CLAIMS = ['sub', 'exp', 'iat', 'jti', 'sid'];
const SELF = fileURLToPath(import.meta.url);
const NPROC = os.availableParallelism(); // before any pinning

const { values: args } = parseArgs({
  options: {
    serve: { type: 'string' },
    algs: { type: 'string', default: 'RS256,ES256,EdDSA' },
    rounds: { type: 'string', default: '5' },
    slice: { type: 'string', default: '200' },
    duration: { type: 'string', default: '8' },
    warmup: { type: 'string', default: '1' },
    connections: { type: 'string', default: '10' },
    'http-kinds': { type: 'string' },
    'no-pin': { type: 'boolean', default: false },
    'skip-micro': { type: 'boolean', default: false },
    'skip-http': { type: 'boolean', default: false },
    'quiet-wait': { type: 'string', default: '5' },
    json: { type: 'string' },
  },
});

// ====================================================================== shared helpers

interface Material {
  alg: Alg;
  token: string;
  refreshToken: string;
  jwks: { keys: JWK[] };
  jwksCacheControl: string;
  jwk: JWK;
  pem: string;
}

/** A `fetch` that answers every JWKS request with what the auth server served. */
function jwksFetch(material: Pick<Material, 'jwks' | 'jwksCacheControl'>): typeof globalThis.fetch {
  const body = JSON.stringify(material.jwks);
  return (async () =>
    new Response(body, {
      status: 200,
      headers: { 'content-type': 'application/json', 'cache-control': material.jwksCacheControl },
    })) as typeof globalThis.fetch;
}

/** Which of ours: `node` is what `createVerifier` picks on Node (fast-jwt), `jose` the portable engine. */
type OurEngine = 'node' | 'jose';
const ENGINE_NAME = { node: 'fast-jwt', jose: 'jose' } as const satisfies Record<OurEngine, Verifier['engine']>;

/**
 * One of ours, as shipped: `createVerifier` (the Node engine, picked by the package's
 * `#key-verifier` import) or `createVerifierWith(joseEngine, …)`, with or without the
 * verified-token cache. Throws if the verifier's `engine` is not the one asked for.
 */
function ourVerifier(
  material: Material,
  extra: { engine?: OurEngine; cache?: number; clock?: () => number; audience?: string } = {},
): Verifier {
  const engine = extra.engine ?? 'node';
  const options: VerifierOptions = {
    issuer: ISSUER,
    audience: extra.audience ?? AUDIENCE,
    jwksUri: `${ISSUER}/.well-known/jwks.json`,
    algorithms: [material.alg],
    fetch: jwksFetch(material),
    clock: extra.clock,
    cache: extra.cache,
  };
  const verifier = engine === 'jose' ? createVerifierWith(joseEngine, options) : createVerifier(options);
  if (verifier.engine !== ENGINE_NAME[engine]) {
    throw new Error(`expected the ${ENGINE_NAME[engine]} engine, createVerifier${engine === 'jose' ? 'With' : ''} gave ${verifier.engine}`);
  }
  return verifier;
}

function pin(pid: number, cpu: number): void {
  if (args['no-pin']) return;
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
}

const log = (message: string) => process.stderr.write(`[verify.bench] ${message}\n`);

// ====================================================================== child: one HTTP server

// Load order (then reversed): each of ours next to what it is compared with.
const HTTP_KINDS = ['fastify-bare', 'ours', 'fastify-jwt', 'ours-cache', 'fastify-jwt-cache', 'ours-jose', 'express-jsonwebtoken-pem'] as const;
type HttpKind = (typeof HTTP_KINDS)[number];

async function serve(kind: HttpKind): Promise<void> {
  const material = JSON.parse(process.env.VERIFY_BENCH_MATERIAL!) as Material;
  let close: () => Promise<void>;
  let port: number;
  if (kind === 'express-jsonwebtoken-pem') {
    const { default: express } = await import('express');
    const { default: jwt } = await import('jsonwebtoken');
    const pem = material.pem;
    const app = express();
    // The design notes' middleware: split "Bearer <token>", 401 when absent, 403 when jwt.verify fails.
    app.get('/api/profile', (req, res) => {
      const parts = (req.headers.authorization ?? '').split(' ');
      if (parts.length !== 2 || parts[0] !== 'Bearer') {
        res.status(401).json({ error: 'invalid_token' });
        return;
      }
      try {
        const claims = jwt.verify(parts[1]!, pem, { algorithms: ['RS256'], issuer: ISSUER, audience: AUDIENCE }) as { username: string };
        res.json({ user: claims.username });
      } catch {
        res.status(403).json({ error: 'invalid_token' });
      }
    });
    const server = await new Promise<import('node:http').Server>((resolve) => {
      const s = app.listen(0, '127.0.0.1', () => resolve(s));
    });
    port = (server.address() as import('node:net').AddressInfo).port;
    close = () => new Promise((resolve) => server.close(() => resolve()));
  } else {
    const { default: Fastify } = await import('fastify');
    const app = Fastify({ logger: false });
    if (kind === 'fastify-bare') {
      app.get('/api/profile', async () => ({ user: 'nobody' }));
    } else if (kind === 'fastify-jwt' || kind === 'fastify-jwt-cache') {
      const { default: fastifyJwt } = await import('@fastify/jwt');
      // Its best configuration: a static public key (fast-jwt imports it once and keeps
      // one verifier); fast-jwt's own cache off, or on with as many entries as ours.
      await app.register(fastifyJwt, {
        secret: { public: material.pem },
        verify: {
          algorithms: ['RS256'],
          allowedIss: ISSUER,
          allowedAud: AUDIENCE,
          checkTyp: 'at+jwt',
          requiredClaims: REQUIRED_CLAIMS,
          clockTolerance: CLOCK_TOLERANCE_S * 1000,
          cache: kind === 'fastify-jwt-cache' ? 10_000 : false,
        },
      } as never);
      app.get(
        '/api/profile',
        {
          preHandler: async (request, reply) => {
            try {
              await request.jwtVerify();
            } catch (error) {
              return reply.send(error);
            }
          },
        },
        async (request) => ({ user: (request.user as { username: string }).username }),
      );
    } else {
      const { tesseraAuth } = await import('@tessera/verify/fastify');
      const verifier = ourVerifier(material, {
        engine: kind === 'ours-jose' ? 'jose' : 'node',
        cache: kind === 'ours-cache' ? 10_000 : undefined,
      });
      await verifier.prefetch();
      await app.register(tesseraAuth, { verifier });
      app.get('/api/profile', { preHandler: app.tessera.requireAuth }, async (request) => ({ user: request.auth!.username }));
    }
    await app.listen({ port: 0, host: '127.0.0.1' });
    port = (app.server.address() as import('node:net').AddressInfo).port;
    close = () => app.close();
  }
  process.on('message', (message: { type: string }) => {
    if (message.type === 'cpu') process.send!({ type: 'cpu', usage: process.cpuUsage() });
    if (message.type === 'close') void close().then(() => process.exit(0));
  });
  process.send!({ type: 'ready', port });
}


// ====================================================================== main

async function main(): Promise<void> {
  const started = performance.now();
  const algs = args.algs!.split(',') as Alg[];
  if (!algs.includes('RS256')) throw new Error('--algs must include RS256 (the HTTP part uses it)');

  // ---------------------------------------------------------------- tokens from real auth servers
  const materials = new Map<Alg, Material>();
  {
    const { createAuthServer } = await import('@tessera/server');
    for (const alg of algs) {
      const server = await createAuthServer({
        port: 0,
        dataDir: 'memory://',
        log: false,
        alg,
        issuer: ISSUER,
        rateLimit: 'ip=1000000/1m,user=1000000/1m',
      });
      const url = await server.listen();
      const credentials = JSON.stringify({ username: `bench-${alg.toLowerCase()}`, password: 'correct horse battery staple' });
      const post = (path: string) => fetch(`${url}${path}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: credentials });
      const registered = await post('/auth/register');
      if (registered.status !== 201) throw new Error(`register (${alg}): ${registered.status} ${await registered.text()}`);
      const login = await post('/auth/login');
      if (login.status !== 200) throw new Error(`login (${alg}): ${login.status} ${await login.text()}`);
      const pair = (await login.json()) as { access_token: string; refresh_token: string };
      const jwksResponse = await fetch(`${url}/.well-known/jwks.json`);
      const jwks = (await jwksResponse.json()) as { keys: JWK[] };
      const kid = JSON.parse(Buffer.from(pair.access_token.split('.')[0]!, 'base64url').toString()).kid as string;
      const jwk = jwks.keys.find((k) => k.kid === kid)!;
      const pem = createPublicKey({ key: jwk as never, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
      materials.set(alg, {
        alg,
        token: pair.access_token,
        refreshToken: pair.refresh_token,
        jwks,
        jwksCacheControl: jwksResponse.headers.get('cache-control') ?? 'max-age=300',
        jwk,
        pem,
      });
      await server.close();
    }
    const exp = JSON.parse(Buffer.from(materials.get('RS256')!.token.split('.')[1]!, 'base64url').toString()).exp as number;
    log(`tokens ready (${algs.join(', ')}); RS256 token: ${materials.get('RS256')!.token.length} chars, expires in ${exp - Math.floor(Date.now() / 1000)} s`);
  }

  // ---------------------------------------------------------------- the engines (and the cache) must agree
  const selfTest = await selfTestEngines(materials);
  log(
    `self-test: ${selfTest.agreed}/${selfTest.total} cases give the same outcome on the Node engine, the jose engine and the Node engine with the cache` +
      (selfTest.failures.length ? `; DISAGREE: ${selfTest.failures.join('; ')}` : ''),
  );
  if (selfTest.failures.length) throw new Error('the engines (or the cache) do not accept/refuse the same tokens; not measuring them');

  // ---------------------------------------------------------------- optional references
  const fastJwt = await import('fast-jwt').catch(() => undefined);

  const quiet = { ms: Number(args['quiet-wait']) * 1000 };
  const micro: MicroResult[] = [];
  if (!args['skip-micro']) {
    pin(process.pid, 0);
    for (const alg of algs) {
      await waitForQuiet({ budget: quiet, threshold: 0.3, log });
      micro.push(...(await microBench(materials.get(alg)!, fastJwt?.createVerifier)));
    }
  }

  const http: HttpResult[] = [];
  if (!args['skip-http']) {
    pin(process.pid, 1);
    const kinds = (args['http-kinds']?.split(',') as HttpKind[] | undefined) ?? [...HTTP_KINDS];
    for (const kind of kinds) if (!HTTP_KINDS.includes(kind)) throw new Error(`--http-kinds: unknown kind ${kind} (known: ${HTTP_KINDS.join(', ')})`);
    const material = materials.get('RS256')!;
    // Every server starts first (idle ones cost nothing); then one load at a time, in
    // two passes of half the duration each, the second in reverse order (A B C … C B A),
    // so that drift and noise on this shared machine fall on every row alike.
    const handles: ServerHandle[] = [];
    try {
      for (const kind of kinds) handles.push(await startServer(kind, material));
      const order = [...handles, ...[...handles].reverse()];
      for (const handle of order) {
        await waitForQuiet({ budget: quiet, threshold: 0.3, log });
        await loadPass(handle, material, Number(args.duration) / 2);
      }
    } finally {
      await Promise.all(handles.map(stopServer));
    }
    http.push(...handles.map(summarise));
  }

  const elapsed = (performance.now() - started) / 1000;
  const report = render({ micro, http, selfTest, elapsed, fastJwtVersion: fastJwt ? packageVersion('fast-jwt') : undefined });
  process.stdout.write(report);
  if (args.json) writeFileSync(args.json, JSON.stringify({ micro, http, selfTest, elapsed }, null, 2));
  log(`done in ${elapsed.toFixed(0)} s`);
}

// ====================================================================== self-test

/**
 * The Node engine (`createVerifier`), the jose engine (`createVerifierWith(joseEngine)`)
 * and the Node engine with the verified-token cache must give the same outcome, error
 * code included, on every case; the expected outcome is checked too. The cached
 * verifier sees each token after it has verified the valid one, so its answers on the
 * later cases also show that a cached entry never overrides a refusal.
 */
async function selfTestEngines(materials: Map<Alg, Material>) {
  const failures: string[] = [];
  let total = 0;
  let failed = 0;
  const ENGINES = ['node', 'jose', 'node+cache'] as const;
  type Trio = Record<(typeof ENGINES)[number], Verifier>;
  const trio = (material: Material, extra: { clock?: () => number; audience?: string } = {}): Trio => ({
    node: ourVerifier(material, { ...extra, engine: 'node' }),
    jose: ourVerifier(material, { ...extra, engine: 'jose' }),
    'node+cache': ourVerifier(material, { ...extra, engine: 'node', cache: 100 }),
  });
  const outcome = async (verifier: Verifier, token: string) => {
    try {
      const claims = await verifier.verify(token);
      return `ok:${claims.sub}:${claims.sid}`;
    } catch (error) {
      return error instanceof TesseraError ? error.code : `threw ${String(error)}`;
    }
  };
  const compare = async (label: string, verifiers: Trio, token: string, expect: string) => {
    total++;
    const outcomes = await Promise.all(ENGINES.map((engine) => outcome(verifiers[engine], token)));
    if (outcomes.some((o) => o !== outcomes[0]) || !outcomes[0]!.startsWith(expect)) {
      failed++;
      failures.push(`${label}: expected ${expect}, got ${ENGINES.map((engine, i) => `${engine} ${outcomes[i]}`).join(', ')}`);
    }
  };
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

  for (const material of materials.values()) {
    const { alg, token } = material;
    const [h, p, s] = token.split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString());
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
    const verifiers = trio(material);
    await compare(`${alg} valid`, verifiers, token, 'ok');
    const first = await verifiers['node+cache'].verify(token);
    await compare(`${alg} valid again (cache hit)`, verifiers, token, 'ok');
    // The hit must really come from the cache: the same frozen claims object.
    const again = await verifiers['node+cache'].verify(token);
    if (again !== first || !Object.isFrozen(again)) failures.push(`${alg} cache hit: the cached verifier did not answer from its cache`);
    await compare(`${alg} payload changed`, verifiers, `${h}.${b64({ ...payload, roles: ['admin'] })}.${s}`, 'invalid_token');
    const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
    await compare(`${alg} signature changed`, verifiers, `${h}.${p}.${flipped}`, 'invalid_token');
    await compare(`${alg} no signature`, verifiers, `${h}.${p}.`, 'invalid_token');
    await compare(`${alg} alg none`, verifiers, `${b64({ ...header, alg: 'none' })}.${p}.`, 'invalid_token');
    const hsInput = `${b64({ ...header, alg: 'HS256' })}.${p}`;
    await compare(`${alg} HS256 with the public key as secret`, verifiers, `${hsInput}.${createHmac('sha256', material.pem).update(hsInput).digest('base64url')}`, 'invalid_token');
    await compare(`${alg} unknown kid`, verifiers, `${b64({ ...header, kid: 'nope' })}.${p}.${s}`, 'invalid_token');
    await compare(`${alg} typ JWT`, verifiers, `${b64({ ...header, typ: 'JWT' })}.${p}.${s}`, 'invalid_token');
    await compare(`${alg} refresh token`, verifiers, material.refreshToken, 'invalid_token');
    await compare(`${alg} garbage`, verifiers, 'a.b.c.d', 'invalid_token');
    await compare(`${alg} empty`, verifiers, '', 'invalid_token');
    const otherAudience = trio(material, { audience: 'other-api' });
    await compare(`${alg} wrong audience`, otherAudience, token, 'invalid_token');
    // Time: within the clock tolerance after exp, then past it. The cached verifier
    // verified the token at "now" first, so this also checks the cache never outlives exp.
    let at = Date.now();
    const clock = () => at;
    const timed = trio(material, { clock });
    await compare(`${alg} now`, timed, token, 'ok');
    at = payload.exp * 1000 + 3_000; // the cached entry has lapsed: a full verification, within the tolerance
    await compare(`${alg} 3 s after exp (tolerance 5 s)`, timed, token, 'ok');
    at = payload.exp * 1000 + 6_000; // cached at "now" above: the cache must not serve it now
    await compare(`${alg} 6 s after exp (cached at "now")`, timed, token, 'token_expired');
    at = (payload.iat - 60) * 1000; // before iat: iat is not checked against the clock (as jose without maxTokenAge)
    await compare(`${alg} clock before iat`, timed, token, 'ok');
    for (const group of [verifiers, otherAudience, timed]) for (const verifier of Object.values(group)) verifier.close();
  }
  return { total, agreed: total - failed, failures };
}

// ====================================================================== part 1: verify core

interface MicroResult {
  alg: Alg;
  name: string;
  mode: 'sync' | 'seq' | '16';
  /** 'ours': our verifiers without a cache (the goal's rows); 'cache': verified-token cache hits, reported apart. */
  group: 'baseline' | 'decomposition' | 'reference' | 'ours' | 'cache';
  /** Set on our rows: the engine the verifier reported (`verifier.engine`). */
  engine?: Verifier['engine'];
  opsPerSec: number;
  cpuUsPerOp: number;
  ratio: number;
  /** Raw crypto's CPU µs/op ÷ this row's: the same ratio on CPU time, which time-sharing with other processes moves less. */
  cpuRatio: number;
  perRound: number[];
}

interface MicroVariant {
  name: string;
  mode: 'sync' | 'seq' | '16';
  group: MicroResult['group'];
  engine?: Verifier['engine'];
  run: () => unknown;
}

async function microBench(material: Material, fastJwtCreateVerifier?: (options: Record<string, unknown>) => (token: string) => unknown): Promise<MicroResult[]> {
  const { alg, token } = material;
  const dot2 = token.lastIndexOf('.');
  const input = Buffer.from(token.slice(0, dot2));
  const signature = Buffer.from(token.slice(dot2 + 1), 'base64url');
  const keyObject = createPublicKey({ key: material.jwk as never, format: 'jwk' });
  const cryptoKey = (await importJWK(material.jwk, alg)) as CryptoKey;
  const hash = alg === 'EdDSA' ? null : 'sha256';
  const verifyKey = alg === 'ES256' ? { key: keyObject, dsaEncoding: 'ieee-p1363' as const } : keyObject;
  const subtleAlg = alg === 'RS256' ? { name: 'RSASSA-PKCS1-v1_5' } : alg === 'ES256' ? { name: 'ECDSA', hash: 'SHA-256' } : { name: 'Ed25519' };
  const joseOptions = {
    algorithms: [alg],
    issuer: ISSUER,
    audience: AUDIENCE,
    typ: 'at+jwt',
    clockTolerance: CLOCK_TOLERANCE_S,
    requiredClaims: REQUIRED_CLAIMS,
  };
  const oursNode = ourVerifier(material, { engine: 'node' });
  const oursJose = ourVerifier(material, { engine: 'jose' });
  const oursCache = ourVerifier(material, { engine: 'node', cache: 10_000 });
  const ours = [oursNode, oursJose, oursCache];
  await Promise.all(ours.map((verifier) => verifier.prefetch()));

  const check = (ok: boolean) => {
    if (!ok) throw new Error('verification failed during the benchmark');
  };
  const fastJwtOptions = {
    key: material.pem,
    algorithms: [alg],
    allowedIss: ISSUER,
    allowedAud: AUDIENCE,
    checkTyp: 'at+jwt',
    requiredClaims: REQUIRED_CLAIMS,
    clockTolerance: CLOCK_TOLERANCE_S * 1000,
  };
  const fastJwt = fastJwtCreateVerifier?.({ ...fastJwtOptions, cache: false });
  const fastJwtCache = fastJwtCreateVerifier?.({ ...fastJwtOptions, cache: 10_000 });
  const fastJwtVersion = packageVersion('fast-jwt');
  const nodeName = '**ours** `createVerifier` (Node engine: fast-jwt)';
  const joseName = '**ours** `createVerifierWith(joseEngine)` (portable engine: jose/WebCrypto)';
  const cacheName = '**ours** `createVerifier` + `cache: 10_000` (Node engine; same token every call: cache hits)';
  const variants: MicroVariant[] = [
    { name: 'node:crypto `crypto.verify` (KeyObject), sync', mode: 'sync', group: 'baseline', run: () => check(cryptoVerify(hash, input, verifyKey, signature)) },
    {
      name: 'node:crypto `crypto.verify` with a callback (threadpool)',
      mode: '16',
      group: 'decomposition',
      run: () =>
        new Promise<void>((resolve, reject) =>
          cryptoVerify(hash, input, verifyKey, signature, (error, ok) => {
            if (error) return reject(error);
            check(ok);
            resolve();
          }),
        ),
    },
    { name: 'WebCrypto `crypto.subtle.verify` (CryptoKey)', mode: 'seq', group: 'decomposition', run: async () => check(await webcrypto.subtle.verify(subtleAlg, cryptoKey as never, signature, input)) },
    { name: 'WebCrypto `crypto.subtle.verify` (CryptoKey)', mode: '16', group: 'decomposition', run: async () => check(await webcrypto.subtle.verify(subtleAlg, cryptoKey as never, signature, input)) },
    { name: 'jose `jwtVerify` (CryptoKey)', mode: 'seq', group: 'reference', run: () => jwtVerify(token, cryptoKey, joseOptions) },
    { name: 'jose `jwtVerify` (CryptoKey)', mode: '16', group: 'reference', run: () => jwtVerify(token, cryptoKey, joseOptions) },
    ...(fastJwt ? [{ name: `fast-jwt ${fastJwtVersion} direct (key parsed once, cache off), sync`, mode: 'sync', group: 'reference', run: () => fastJwt(token) } as const] : []),
    { name: nodeName, mode: 'seq', group: 'ours', engine: oursNode.engine, run: () => oursNode.verify(token) },
    { name: nodeName, mode: '16', group: 'ours', engine: oursNode.engine, run: () => oursNode.verify(token) },
    { name: joseName, mode: 'seq', group: 'ours', engine: oursJose.engine, run: () => oursJose.verify(token) },
    { name: joseName, mode: '16', group: 'ours', engine: oursJose.engine, run: () => oursJose.verify(token) },
    { name: cacheName, mode: 'seq', group: 'cache', engine: oursCache.engine, run: () => oursCache.verify(token) },
    { name: cacheName, mode: '16', group: 'cache', engine: oursCache.engine, run: () => oursCache.verify(token) },
    ...(fastJwtCache
      ? [{ name: `fast-jwt ${fastJwtVersion} direct, \`cache: 10_000\` (same token every call: cache hits), sync`, mode: 'sync', group: 'cache', run: () => fastJwtCache(token) } as const]
      : []),
  ];
  for (const variant of variants) await variant.run(); // each must accept the token

  const rounds = Number(args.rounds);
  const sliceMs = Number(args.slice) * (alg === 'RS256' ? 1.2 : 1);
  const ops = variants.map(() => [] as number[]);
  const cpu = variants.map(() => ({ us: 0, ops: 0 }));
  const ratios = variants.map(() => [] as number[]);
  log(`${alg}: warming up ${variants.length} variants`);
  for (const variant of variants) await timeVariant(variant, 60);
  for (let round = 0; round < rounds; round++) {
    const order = variants.map((_, i) => (i + round * 5) % variants.length);
    const roundOps: number[] = [];
    for (const i of order) {
      const result = await timeVariant(variants[i]!, sliceMs);
      roundOps[i] = result.ops / (result.wallMs / 1000);
      ops[i]!.push(roundOps[i]!);
      cpu[i]!.us += result.cpuUs;
      cpu[i]!.ops += result.ops;
    }
    for (let i = 0; i < variants.length; i++) ratios[i]!.push(roundOps[i]! / roundOps[0]!);
    const seq = (engine: Verifier['engine'], group: MicroResult['group']) =>
      fmtK(roundOps[variants.findIndex((v) => v.engine === engine && v.group === group && v.mode === 'seq')]!);
    log(`${alg}: round ${round + 1}/${rounds}: raw ${fmtK(roundOps[0]!)}/s; seq: Node engine ${seq('fast-jwt', 'ours')}/s, jose engine ${seq('jose', 'ours')}/s, cache hits ${seq('fast-jwt', 'cache')}/s`);
  }
  for (const verifier of ours) verifier.close();
  return variants.map((variant, i) => ({
    alg,
    name: variant.name,
    mode: variant.mode,
    group: variant.group,
    engine: variant.engine,
    opsPerSec: median(ops[i]!),
    cpuUsPerOp: cpu[i]!.us / cpu[i]!.ops,
    ratio: median(ratios[i]!),
    cpuRatio: cpu[0]!.us / cpu[0]!.ops / (cpu[i]!.us / cpu[i]!.ops),
    perRound: ops[i]!,
  }));
}

async function timeVariant(variant: MicroVariant, ms: number): Promise<{ ops: number; wallMs: number; cpuUs: number }> {
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  const end = t0 + ms;
  let ops = 0;
  if (variant.mode === 'sync') {
    const run = variant.run;
    while (performance.now() < end) {
      for (let i = 0; i < 16; i++) run();
      ops += 16;
    }
  } else {
    const workers = variant.mode === '16' ? 16 : 1;
    const run = variant.run as () => Promise<unknown>;
    await Promise.all(
      Array.from({ length: workers }, async () => {
        while (performance.now() < end) {
          await run();
          ops++;
        }
      }),
    );
  }
  const wallMs = performance.now() - t0;
  const cpuDelta = process.cpuUsage(cpu0);
  await new Promise((resolve) => setImmediate(resolve));
  return { ops, wallMs, cpuUs: cpuDelta.user + cpuDelta.system };
}

// ====================================================================== part 2: HTTP

interface HttpResult {
  kind: HttpKind;
  label: string;
  reqPerSec: number;
  /** req/s of each pass, in the order run. */
  perPass: number[];
  /** The worse of the passes. */
  p50: number;
  p99: number;
  serverCpuMsPerReq: number;
  otherCores: number;
  non2xx: number;
  errors: number;
  total: number;
}

const HTTP_LABELS: Record<HttpKind, string> = {
  'fastify-bare': 'Fastify 5, no auth (framework ceiling)',
  ours: '**Fastify + `@tessera/verify/fastify`**, `createVerifier` (Node engine: fast-jwt), no cache',
  'ours-jose': '**Fastify + `@tessera/verify/fastify`**, `createVerifierWith(joseEngine)` (portable engine: jose/WebCrypto), no cache',
  'ours-cache': '**Fastify + `@tessera/verify/fastify`**, `createVerifier` (Node engine) + `cache: 10_000` (one token: all hits)',
  'fastify-jwt': 'Fastify + `@fastify/jwt` (static public key), cache off',
  'fastify-jwt-cache': 'Fastify + `@fastify/jwt` (static public key), fast-jwt `cache: 10_000` (one token: all hits)',
  'express-jsonwebtoken-pem': 'Express 5 + `jsonwebtoken.verify(token, PEM)` (design notes)',
};

interface ServerHandle {
  kind: HttpKind;
  child: ChildProcess;
  url: string;
  passes: { total: number; seconds: number; p50: number; p99: number; cpuUs: number; others: number; non2xx: number; errors: number }[];
}

/** Starts one server child (pinned to CPU 0, all its threads) and checks it accepts the token and refuses a tampered one. */
async function startServer(kind: HttpKind, material: Material): Promise<ServerHandle> {
  const nodeArgs = ['--conditions=tessera-source', '--import', 'tsx', SELF, '--serve', kind];
  const [command, commandArgs] = args['no-pin'] ? [process.execPath, nodeArgs] : ['taskset', ['-c', '0', process.execPath, ...nodeArgs]];
  const child = spawn(command, commandArgs, {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    env: { ...process.env, VERIFY_BENCH_MATERIAL: JSON.stringify(material) },
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once('message', (message: { type: string; port: number }) => resolve(message.port));
    child.once('exit', (code) => reject(new Error(`${kind} server exited (${code}) before it was ready`)));
  });
  const url = `http://127.0.0.1:${port}/api/profile`;
  const ok = await fetch(url, { headers: { authorization: `Bearer ${material.token}` } });
  if (ok.status !== 200) throw new Error(`${kind}: GET with the token answered ${ok.status} ${await ok.text()}`);
  if (kind !== 'fastify-bare') {
    const tampered = material.token.slice(0, -8) + (material.token.endsWith('AAAAAAAA') ? 'BBBBBBBB' : 'AAAAAAAA');
    const refused = await fetch(url, { headers: { authorization: `Bearer ${tampered}` } });
    if (refused.status < 400) throw new Error(`${kind}: a tampered token was accepted`);
  }
  return { kind, child, url, passes: [] };
}

async function stopServer(handle: ServerHandle): Promise<void> {
  const { child } = handle;
  if (child.exitCode !== null || child.signalCode !== null) return;
  await new Promise<void>((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), 3_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.send({ type: 'close' });
  });
}

/** One load on one server: `--warmup` s unmeasured, then `seconds` measured. */
async function loadPass(handle: ServerHandle, material: Material, seconds: number): Promise<void> {
  const { default: autocannon } = await import('autocannon');
  const { child, url } = handle;
  const headers = { authorization: `Bearer ${material.token}` };
  const connections = Number(args.connections);
  await autocannon({ url, connections, duration: Number(args.warmup), headers });
  const cpu0 = await childCpu(child);
  const busy0 = machineTicks();
  const ours0 = pidJiffies(process.pid) + pidJiffies(child.pid!);
  const result = (await autocannon({ url, connections, duration: seconds, headers })) as AutocannonResult;
  const ours1 = pidJiffies(process.pid) + pidJiffies(child.pid!);
  const busy1 = machineTicks();
  const cpu1 = await childCpu(child);
  const pass = {
    total: result.requests.total,
    seconds: result.duration,
    p50: result.latency.p50,
    p99: result.latency.p99,
    cpuUs: cpu1.user + cpu1.system - cpu0.user - cpu0.system,
    others: Math.max(0, busy1.busy - busy0.busy - (ours1 - ours0)) / ((busy1.total - busy0.total) / NPROC),
    non2xx: result.non2xx,
    errors: result.errors,
  };
  handle.passes.push(pass);
  log(
    `${handle.kind} pass ${handle.passes.length}: ${fmtK(pass.total / pass.seconds)} req/s, p50 ${pass.p50} ms, p99 ${pass.p99} ms, ` +
      `server ${(pass.cpuUs / 1000 / pass.total).toFixed(3)} CPU ms/req, non2xx ${pass.non2xx}, errors ${pass.errors}, others ${pass.others.toFixed(2)} cores`,
  );
}

function summarise(handle: ServerHandle): HttpResult {
  const { passes } = handle;
  const total = passes.reduce((sum, p) => sum + p.total, 0);
  const seconds = passes.reduce((sum, p) => sum + p.seconds, 0);
  return {
    kind: handle.kind,
    label: HTTP_LABELS[handle.kind],
    reqPerSec: total / seconds,
    perPass: passes.map((p) => p.total / p.seconds),
    p50: Math.max(...passes.map((p) => p.p50)),
    p99: Math.max(...passes.map((p) => p.p99)),
    serverCpuMsPerReq: passes.reduce((sum, p) => sum + p.cpuUs, 0) / 1000 / total,
    otherCores: passes.reduce((sum, p) => sum + p.others * p.seconds, 0) / seconds,
    non2xx: passes.reduce((sum, p) => sum + p.non2xx, 0),
    errors: passes.reduce((sum, p) => sum + p.errors, 0),
    total,
  };
}

interface AutocannonResult {
  duration: number;
  requests: { total: number };
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
}

function childCpu(child: ChildProcess): Promise<NodeJS.CpuUsage> {
  return new Promise((resolve) => {
    const onMessage = (message: { type: string; usage: NodeJS.CpuUsage }) => {
      if (message.type !== 'cpu') return;
      child.off('message', onMessage);
      resolve(message.usage);
    };
    child.on('message', onMessage);
    child.send({ type: 'cpu' });
  });
}

// ====================================================================== machine noise

// ====================================================================== report

function render(input: { micro: MicroResult[]; http: HttpResult[]; selfTest: { total: number; agreed: number }; elapsed: number; fastJwtVersion?: string }): string {
  const { micro, http } = input;
  const lines: string[] = [];
  const cpus = os.cpus();
  lines.push(`## Verify benchmark: ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC`);
  lines.push('');
  lines.push(
    `Machine: nproc ${NPROC} (${cpus[0]?.model.trim()}), Node ${process.version}, OpenSSL ${process.versions.openssl}; jose ${packageVersion('jose')}, fastify ${packageVersion('fastify')}, @fastify/jwt ${packageVersion('@fastify/jwt') ?? 'not installed'}, express ${packageVersion('express')}, jsonwebtoken ${packageVersion('jsonwebtoken')}, fast-jwt ${input.fastJwtVersion ?? 'not installed'}. Pinning: ${args['no-pin'] ? 'off' : 'part 1 on CPU 0; part 2 server child on CPU 0, autocannon on CPU 1'}. Run time ${input.elapsed.toFixed(0)} s.`,
  );
  lines.push('');
  if (micro.length) {
    lines.push(`### 1. Verify core, one CPU (median of ${args.rounds} interleaved rounds; ratio = median of per-round ratios to row 1 of the same alg)`);
    lines.push('');
    lines.push('| alg | implementation | in flight | ops/s | CPU µs/op | × raw crypto (ops/s) | × raw crypto (CPU) |');
    lines.push('|---|---|---:|---:|---:|---:|---:|');
    for (const row of micro) {
      lines.push(`| ${row.alg} | ${row.name} | ${row.mode === 'sync' ? '1 (sync)' : row.mode === 'seq' ? '1' : '16'} | ${fmtK(row.opsPerSec)} | ${row.cpuUsPerOp.toFixed(1)} | ${row.ratio.toFixed(2)} | ${row.cpuRatio.toFixed(2)} |`);
    }
    lines.push('');
    const algs = [...new Set(micro.map((r) => r.alg))];
    const meets = (ratio: number, cpuRatio: number, goal: number) =>
      ratio >= goal && cpuRatio >= goal ? 'met' : ratio >= goal ? 'met on ops/s, not on CPU' : cpuRatio >= goal ? 'met on CPU, not on ops/s' : '**NOT met**';
    lines.push('Goal: verify core ≥ 0.9× raw `crypto.verify`, no cache (ops/s ratio · CPU ratio):');
    lines.push('');
    lines.push('| alg | engine | 1 in flight | 16 in flight | goal ≥ 0.9× (1 / 16) |');
    lines.push('|---|---|---:|---:|---|');
    for (const alg of algs) {
      for (const engine of ['fast-jwt', 'jose'] as const) {
        const seq = micro.find((r) => r.alg === alg && r.group === 'ours' && r.engine === engine && r.mode === 'seq');
        const par = micro.find((r) => r.alg === alg && r.group === 'ours' && r.engine === engine && r.mode === '16');
        if (!seq || !par) continue;
        const label = engine === 'fast-jwt' ? 'Node (`createVerifier`, fast-jwt)' : 'portable (`createVerifierWith(joseEngine)`, jose)';
        lines.push(
          `| ${alg} | ${label} | ${seq.ratio.toFixed(2)} · ${seq.cpuRatio.toFixed(2)} | ${par.ratio.toFixed(2)} · ${par.cpuRatio.toFixed(2)} | ${meets(seq.ratio, seq.cpuRatio, 0.9)} / ${meets(par.ratio, par.cpuRatio, 0.9)} |`,
        );
      }
    }
    lines.push('');
    const hits = algs.map((alg) => {
      const rows = micro.filter((r) => r.alg === alg && r.group === 'cache' && r.engine !== undefined);
      return `${alg} ${rows.map((r) => `${r.mode === 'seq' ? '1' : '16'} in flight ${r.ratio.toFixed(0)}× (${fmtK(r.opsPerSec)}/s)`).join(', ')}`;
    });
    lines.push(`Cache hits (ours with \`cache: 10_000\`, the same token every call; no goal, reported apart): ${hits.join('; ')}.`);
    lines.push('');
    lines.push(
      `Self-test: ${input.selfTest.agreed}/${input.selfTest.total} accept/refuse cases give the same outcome (and error code) on the Node engine, the jose engine and the Node engine with the cache.`,
    );
    lines.push('');
  }
  if (http.length) {
    const by = (kind: HttpKind) => http.find((r) => r.kind === kind);
    const letters = http.map((_, i) => String.fromCharCode(65 + i));
    const order = `${letters[0]}…${letters.at(-1)} then ${letters.at(-1)}…${letters[0]}`;
    lines.push(
      `### 2. HTTP, RS256 Bearer token: server child pinned to 1 CPU, autocannon in the bench process on CPU 1, ${args.connections} connections, loopback; ${args.duration} s per server measured as 2 passes of ${Number(args.duration) / 2} s (order ${order}, each after ${args.warmup} s warm-up); req/s over both passes, p50/p99 the worse pass`,
    );
    lines.push('');
    lines.push('| | kind | server | req/s | (pass 1 / pass 2) | p50 ms | p99 ms | server CPU ms/req | other procs (cores) |');
    lines.push('|---|---|---|---:|---|---:|---:|---:|---:|');
    http.forEach((row, i) => {
      const bad = row.non2xx || row.errors ? ` ⚠ ${row.non2xx} non-2xx, ${row.errors} errors` : '';
      lines.push(
        `| ${letters[i]} | \`${row.kind}\` | ${row.label}${bad} | ${fmtK(row.reqPerSec)} | ${row.perPass.map(fmtK).join(' / ')} | ${row.p50} | ${row.p99} | ${row.serverCpuMsPerReq.toFixed(3)} | ${row.otherCores.toFixed(2)} |`,
      );
    });
    lines.push('');
    const pairs: [HttpKind, HttpKind, number | undefined][] = [
      ['ours', 'fastify-jwt', 1.2],
      ['ours-cache', 'fastify-jwt-cache', 1.2],
      ['ours', 'express-jsonwebtoken-pem', 5],
      ['ours-jose', 'fastify-jwt', undefined],
    ];
    const rows: string[] = [];
    for (const [oursKind, theirsKind, goal] of pairs) {
      const a = by(oursKind);
      const b = by(theirsKind);
      if (!a || !b) continue;
      const byRate = a.reqPerSec / b.reqPerSec;
      const byCpu = b.serverCpuMsPerReq / a.serverCpuMsPerReq;
      const verdict = (ratio: number) => (goal === undefined ? '' : ratio >= goal ? ' met' : ' **NOT met**');
      const p99 = `${a.p99} vs ${b.p99} (${a.p99 <= b.p99 ? 'no worse' : '**WORSE**'})`;
      rows.push(
        `| \`${oursKind}\` ÷ \`${theirsKind}\` | ${goal === undefined ? 'none (for information)' : `≥ ${goal}×, p99 no worse`} | ${byRate.toFixed(2)}×${verdict(byRate)} | ${byCpu.toFixed(2)}×${verdict(byCpu)} | ${p99} |`,
      );
    }
    if (rows.length) {
      lines.push('| comparison | goal | req/s | req per server CPU second | p99 ms, ours vs theirs |');
      lines.push('|---|---|---:|---:|---|');
      lines.push(...rows);
      lines.push('');
    }
  }
  return `${lines.join('\n')}\n`;
}

function packageVersion(name: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(new URL(`../node_modules/${name}/package.json`, import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return undefined;
  }
}

function fmtK(value: number): string {
  if (value >= 1e6) return `${(value / 1e6).toFixed(2)}M`;
  return value >= 1000 ? `${(value / 1000).toFixed(1)}k` : value.toFixed(0);
}

// ====================================================================== entry (last, so every const above is initialised)

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(SELF)) {
  if (args.serve) await serve(args.serve as HttpKind);
  else await main();
}
