/**
 * Verify benchmark: what `@tessera/verify` costs per access token, against the raw
 * `node:crypto` ceiling and against the libraries people would use instead, all
 * measured in this one run on this one machine. Prints markdown on stdout (progress
 * on stderr).
 *
 *   node --conditions=tessera-source --import tsx bench/verify.bench.ts [options]
 *
 * Part 1, in this process (pinned to one CPU, every thread of it, so the libuv
 * threadpool that WebCrypto uses shares that CPU): ops/s of one token verified over
 * and over, one at a time ("seq") and with 16 in flight ("16"). Every variant runs
 * for `--slice` ms per round, `--rounds` rounds, in a rotated order; a row shows the
 * median ops/s over the rounds, the CPU µs per op (all threads), and the median of
 * the per-round ratios to the raw `crypto.verify` ceiling of the same round.
 *
 * Part 2, over HTTP: each server runs in its own child process (this file with
 * `--serve KIND`) pinned to CPU 0 (all its threads); autocannon runs in this process
 * pinned to CPU 1; `--connections` connections, GET /api/profile with a Bearer RS256
 * token. All servers start first; then one load at a time, in two passes of
 * `--duration`/2 s each (after `--warmup` s unmeasured), the second pass in reverse order.
 *
 * Tokens come from real in-process auth servers (`@tessera/server`, memory://),
 * one per algorithm, which are closed before anything is measured; verifiers get
 * the JWKS those servers served (through `createVerifier`'s `fetch` option).
 *
 * Rows labelled PROTOTYPE are not shipped code: they are the Node fast path this
 * file sketches (`createNodeFastVerifier` below) to show what `packages/verify`
 * could reach. A self-test checks that the prototype refuses and accepts the same
 * tokens as `createVerifier` before it is measured.
 *
 * Options: --algs RS256,ES256,EdDSA  --rounds 5  --slice 200 (ms)  --duration 8
 *   --warmup 1  --connections 10  --http-kinds LIST  --no-pin  --skip-micro
 *   --skip-http  --quiet-wait 5 (s, in all, waiting for other processes to leave
 *   the CPU before a measured phase)  --json FILE
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import {
  createHmac,
  createPublicKey,
  verify as cryptoVerify,
  type KeyObject,
  webcrypto,
} from 'node:crypto';
import { readFileSync, realpathSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type AccessTokenClaims, TesseraError } from '@tessera/protocol';
import { createVerifier, type Verifier } from '@tessera/verify';
import { type CryptoKey, importJWK, type JWK, jwtVerify } from 'jose';

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

// ====================================================================== the prototype

/**
 * PROTOTYPE (benchmark only, not shipped): the checks of `createVerifier` (jose's
 * `jwtVerify` with our options, then our own claim checks) done by hand, with each
 * JWK imported once as a node:crypto `KeyObject` and the signature checked with the
 * synchronous `crypto.verify` (no WebCrypto promise, no threadpool round trip). The
 * header segment, identical for every token of one key, is parsed and checked once
 * and remembered by its exact text (at most 64 entries).
 *
 * With `cache`, a verified token is remembered by its exact string (no hash, so no
 * key collisions), at most `cache` entries, and never past its `exp` (no clock
 * tolerance is granted to a cached entry). A real version would still run the
 * revocation check on a hit and flush the cache when a key leaves the JWKS.
 *
 * What it leaves out from the real thing: the JWKS fetching/refresh plumbing (keys
 * are passed in; the lookup on the hot path is the same Map lookup either way).
 */
export function createNodeFastVerifier(options: {
  jwks: JWK[];
  issuer: string;
  audience: string;
  algorithms: Alg[];
  clockTolerance?: number;
  clock?: () => number;
  cache?: number;
}): Pick<Verifier, 'verify'> {
  const tolerance = options.clockTolerance ?? CLOCK_TOLERANCE_S;
  const now = options.clock ?? Date.now;
  const keys = new Map<string, { alg: Alg; check: (input: Buffer, signature: Buffer) => boolean }>();
  for (const jwk of options.jwks) {
    if (typeof jwk.kid !== 'string' || (jwk.use !== undefined && jwk.use !== 'sig') || 'd' in jwk) continue;
    const alg = jwk.alg as Alg;
    if (!options.algorithms.includes(alg)) continue;
    const key = createPublicKey({ key: jwk as never, format: 'jwk' });
    const details = key.asymmetricKeyDetails ?? {};
    if (alg === 'RS256' && (key.asymmetricKeyType !== 'rsa' || (details.modulusLength ?? 0) < 2048)) continue;
    if (alg === 'ES256' && (key.asymmetricKeyType !== 'ec' || details.namedCurve !== 'prime256v1')) continue;
    if (alg === 'EdDSA' && key.asymmetricKeyType !== 'ed25519') continue;
    keys.set(jwk.kid, { alg, check: signatureCheck(alg, key) });
  }
  const cache = options.cache ? new Map<string, { claims: AccessTokenClaims; until: number }>() : undefined;
  const maxEntries = options.cache ?? 0;
  const headers = new Map<string, { alg: Alg; check: (input: Buffer, signature: Buffer) => boolean }>();
  const fatalUtf8 = new TextDecoder('utf-8', { fatal: true });
  const B64URL = /^[A-Za-z0-9_-]+$/;

  function decodeJson(part: string): Record<string, unknown> {
    let value: unknown;
    try {
      value = JSON.parse(fatalUtf8.decode(Buffer.from(part, 'base64url')));
    } catch {
      throw new TesseraError('invalid_token');
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new TesseraError('invalid_token');
    const proto = Object.getPrototypeOf(value);
    if (proto !== null && Object.getPrototypeOf(proto) !== null) throw new TesseraError('invalid_token');
    return value as Record<string, unknown>;
  }

  function verifySync(token: string): AccessTokenClaims {
    if (typeof token !== 'string' || token.length === 0 || token.length > 16_384) throw new TesseraError('invalid_token');
    const nowMs = now();
    if (cache) {
      const hit = cache.get(token);
      if (hit) {
        if (nowMs < hit.until) return hit.claims; // (the revocation check would run here too)
        cache.delete(token);
      }
    }
    const dot1 = token.indexOf('.');
    const dot2 = dot1 < 0 ? -1 : token.indexOf('.', dot1 + 1);
    if (dot1 <= 0 || dot2 < 0 || token.indexOf('.', dot2 + 1) !== -1) throw new TesseraError('invalid_token');
    const headerPart = token.slice(0, dot1);
    const payloadPart = token.slice(dot1 + 1, dot2);
    const signaturePart = token.slice(dot2 + 1);
    if (!B64URL.test(payloadPart) || !B64URL.test(signaturePart)) throw new TesseraError('invalid_token');

    // Every token of one key has the same header segment: its checked outcome is
    // remembered by the exact segment text (a handful of entries; cleared with the keys).
    let entry = headers.get(headerPart);
    if (!entry) {
      if (!B64URL.test(headerPart)) throw new TesseraError('invalid_token');
      const header = decodeJson(headerPart);
      const alg = header.alg;
      if (typeof alg !== 'string' || !options.algorithms.includes(alg as Alg)) throw new TesseraError('invalid_token');
      if (header.crit !== undefined) throw new TesseraError('invalid_token'); // no extension is understood
      if (typeof header.typ !== 'string' || normalizeTyp(header.typ) !== 'application/at+jwt') throw new TesseraError('invalid_token');
      entry = typeof header.kid === 'string' ? keys.get(header.kid) : undefined;
      if (!entry || entry.alg !== alg) throw new TesseraError('invalid_token', 'The token was signed by an unknown key.');
      if (headers.size >= 64) headers.clear();
      headers.set(headerPart, entry);
    }
    if (!entry.check(Buffer.from(token.slice(0, dot2), 'latin1'), Buffer.from(signaturePart, 'base64url'))) {
      throw new TesseraError('invalid_token');
    }

    const claims = decodeJson(payloadPart);
    for (const name of [...REQUIRED_CLAIMS, 'aud', 'iss']) {
      if (!Object.hasOwn(claims, name)) throw new TesseraError('invalid_token');
    }
    if (claims.iss !== options.issuer) throw new TesseraError('invalid_token');
    const aud = claims.aud;
    if (!(aud === options.audience || (Array.isArray(aud) && aud.includes(options.audience)))) throw new TesseraError('invalid_token');
    const nowS = Math.floor(nowMs / 1000);
    if (typeof claims.iat !== 'number' || !Number.isFinite(claims.iat)) throw new TesseraError('invalid_token');
    if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || claims.nbf > nowS + tolerance)) throw new TesseraError('invalid_token');
    if (typeof claims.exp !== 'number' || !Number.isFinite(claims.exp)) throw new TesseraError('invalid_token');
    if (claims.exp <= nowS - tolerance) throw new TesseraError('token_expired');
    if (typeof claims.sid !== 'string' || typeof claims.username !== 'string' || !Array.isArray(claims.roles)) {
      throw new TesseraError('invalid_token');
    }
    const result = claims as unknown as AccessTokenClaims;
    if (cache && (claims.nbf === undefined || (claims.nbf as number) <= nowS)) {
      if (cache.size >= maxEntries) cache.delete(cache.keys().next().value as string); // oldest first
      Object.freeze(claims.roles);
      cache.set(token, { claims: Object.freeze(result), until: claims.exp * 1000 });
    }
    return result;
  }

  return {
    async verify(token: string) {
      return verifySync(token);
    },
  };
}

function normalizeTyp(typ: string): string {
  const lower = typ.toLowerCase();
  return lower.includes('/') ? lower : `application/${lower}`;
}

function signatureCheck(alg: Alg, key: KeyObject): (input: Buffer, signature: Buffer) => boolean {
  switch (alg) {
    case 'RS256':
      return (input, signature) => cryptoVerify('sha256', input, key, signature);
    case 'ES256': {
      const withEncoding = { key, dsaEncoding: 'ieee-p1363' as const };
      return (input, signature) => signature.length === 64 && cryptoVerify('sha256', input, withEncoding, signature);
    }
    case 'EdDSA':
      return (input, signature) => cryptoVerify(null, input, key, signature);
  }
}

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

function ourVerifier(material: Material, extra: { clock?: () => number; audience?: string } = {}): Verifier {
  return createVerifier({
    issuer: ISSUER,
    audience: extra.audience ?? AUDIENCE,
    jwksUri: `${ISSUER}/.well-known/jwks.json`,
    algorithms: [material.alg],
    fetch: jwksFetch(material),
    clock: extra.clock,
  });
}

function prototypeVerifier(material: Material, extra: { clock?: () => number; audience?: string; cache?: number } = {}) {
  return createNodeFastVerifier({
    jwks: material.jwks.keys,
    issuer: ISSUER,
    audience: extra.audience ?? AUDIENCE,
    algorithms: [material.alg],
    clock: extra.clock,
    cache: extra.cache,
  });
}

function pin(pid: number, cpu: number): void {
  if (args['no-pin']) return;
  execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
}

const log = (message: string) => process.stderr.write(`[verify.bench] ${message}\n`);

// ====================================================================== child: one HTTP server

const HTTP_KINDS = ['fastify-bare', 'ours', 'fastify-jwt', 'express-jsonwebtoken-pem', 'proto-fast', 'proto-cache'] as const;
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
    } else if (kind === 'fastify-jwt') {
      const { default: fastifyJwt } = await import('@fastify/jwt');
      // Best configuration: a static public key (fast-jwt imports it once), its cache off.
      await app.register(fastifyJwt, {
        secret: { public: material.pem },
        verify: {
          algorithms: ['RS256'],
          allowedIss: ISSUER,
          allowedAud: AUDIENCE,
          checkTyp: 'at+jwt',
          requiredClaims: REQUIRED_CLAIMS,
          clockTolerance: CLOCK_TOLERANCE_S * 1000,
          cache: false,
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
      let verifier: Pick<Verifier, 'verify'>;
      if (kind === 'ours') {
        const real = ourVerifier(material);
        await real.prefetch();
        verifier = real;
      } else {
        verifier = prototypeVerifier(material, { cache: kind === 'proto-cache' ? 10_000 : undefined });
      }
      await app.register(tesseraAuth, { verifier: verifier as Verifier });
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

  // ---------------------------------------------------------------- the prototype must agree with ours
  const selfTest = await selfTestPrototype(materials);
  log(`prototype self-test: ${selfTest.agreed}/${selfTest.total} cases agree with createVerifier${selfTest.failures.length ? `; DISAGREE: ${selfTest.failures.join('; ')}` : ''}`);
  if (selfTest.failures.length) throw new Error('the prototype does not accept/refuse the same tokens as createVerifier; not measuring it');

  // ---------------------------------------------------------------- optional references
  const fastJwt = await import('fast-jwt').catch(() => undefined);

  const quiet = { budgetMs: Number(args['quiet-wait']) * 1000 };
  const micro: MicroResult[] = [];
  if (!args['skip-micro']) {
    pin(process.pid, 0);
    for (const alg of algs) {
      await waitForQuiet(quiet);
      micro.push(...(await microBench(materials.get(alg)!, fastJwt?.createVerifier)));
    }
  }

  const http: HttpResult[] = [];
  if (!args['skip-http']) {
    pin(process.pid, 1);
    const kinds = (args['http-kinds']?.split(',') as HttpKind[] | undefined) ?? [...HTTP_KINDS];
    const material = materials.get('RS256')!;
    // Every server starts first (idle ones cost nothing); then one load at a time, in
    // two passes of half the duration each, the second in reverse order (A B C … C B A),
    // so that drift and noise on this shared machine fall on every row alike.
    const handles: ServerHandle[] = [];
    try {
      for (const kind of kinds) handles.push(await startServer(kind, material));
      const order = [...handles, ...[...handles].reverse()];
      for (const handle of order) {
        await waitForQuiet(quiet);
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

async function selfTestPrototype(materials: Map<Alg, Material>) {
  const failures: string[] = [];
  let total = 0;
  const outcome = async (verifier: Pick<Verifier, 'verify'>, token: string) => {
    try {
      const claims = await verifier.verify(token);
      return `ok:${claims.sub}:${claims.sid}`;
    } catch (error) {
      return error instanceof TesseraError ? error.code : `threw ${String(error)}`;
    }
  };
  const compare = async (label: string, ours: Pick<Verifier, 'verify'>, protos: Pick<Verifier, 'verify'>[], token: string, expect?: string) => {
    total++;
    const a = await outcome(ours, token);
    for (const proto of protos) {
      const b = await outcome(proto, token);
      if (a !== b) failures.push(`${label}: ours ${a}, prototype ${b}`);
    }
    if (expect && !a.startsWith(expect)) failures.push(`${label}: expected ${expect}, ours gave ${a}`);
  };
  const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

  for (const material of materials.values()) {
    const { alg, token } = material;
    const [h, p, s] = token.split('.') as [string, string, string];
    const header = JSON.parse(Buffer.from(h, 'base64url').toString());
    const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
    const ours = ourVerifier(material);
    const protos = [prototypeVerifier(material), prototypeVerifier(material, { cache: 100 })];
    await compare(`${alg} valid`, ours, protos, token, 'ok');
    await compare(`${alg} valid again (cache hit)`, ours, protos, token, 'ok');
    await compare(`${alg} payload changed`, ours, protos, `${h}.${b64({ ...payload, roles: ['admin'] })}.${s}`, 'invalid_token');
    const flipped = s.slice(0, 10) + (s[10] === 'A' ? 'B' : 'A') + s.slice(11);
    await compare(`${alg} signature changed`, ours, protos, `${h}.${p}.${flipped}`, 'invalid_token');
    await compare(`${alg} no signature`, ours, protos, `${h}.${p}.`, 'invalid_token');
    await compare(`${alg} alg none`, ours, protos, `${b64({ ...header, alg: 'none' })}.${p}.`, 'invalid_token');
    const hsInput = `${b64({ ...header, alg: 'HS256' })}.${p}`;
    await compare(`${alg} HS256 with the public key as secret`, ours, protos, `${hsInput}.${createHmac('sha256', material.pem).update(hsInput).digest('base64url')}`, 'invalid_token');
    await compare(`${alg} unknown kid`, ours, protos, `${b64({ ...header, kid: 'nope' })}.${p}.${s}`, 'invalid_token');
    await compare(`${alg} typ JWT`, ours, protos, `${b64({ ...header, typ: 'JWT' })}.${p}.${s}`, 'invalid_token');
    await compare(`${alg} refresh token`, ours, protos, material.refreshToken, 'invalid_token');
    await compare(`${alg} garbage`, ours, protos, 'a.b.c.d', 'invalid_token');
    await compare(`${alg} empty`, ours, protos, '', 'invalid_token');
    await compare(
      `${alg} wrong audience`,
      ourVerifier(material, { audience: 'other-api' }),
      [prototypeVerifier(material, { audience: 'other-api' }), prototypeVerifier(material, { audience: 'other-api', cache: 100 })],
      token,
      'invalid_token',
    );
    // Time: within the clock tolerance after exp, then past it. The cached prototype
    // verified the token at "now" first, so this also checks the cache never outlives exp.
    let at = Date.now();
    const clock = () => at;
    const oursAt = ourVerifier(material, { clock });
    const protosAt = [prototypeVerifier(material, { clock }), prototypeVerifier(material, { clock, cache: 100 })];
    await compare(`${alg} now`, oursAt, protosAt, token, 'ok');
    at = payload.exp * 1000 + 3_000; // the cached entry has lapsed: a full verification, within the tolerance
    await compare(`${alg} 3 s after exp (tolerance 5 s)`, oursAt, protosAt, token, 'ok');
    at = payload.exp * 1000 + 6_000; // cached at "now" above: the cache must not serve it now
    await compare(`${alg} 6 s after exp`, oursAt, protosAt, token, 'token_expired');
    at = (payload.iat - 60) * 1000; // before iat: jose does not check iat without maxTokenAge
    await compare(`${alg} clock before iat`, oursAt, [prototypeVerifier(material, { clock })], token, 'ok');
    ours.close();
    oursAt.close();
  }
  return { total, agreed: total - failures.length, failures };
}

// ====================================================================== part 1: verify core

interface MicroResult {
  alg: Alg;
  name: string;
  mode: 'sync' | 'seq' | '16';
  group: 'baseline' | 'decomposition' | 'ours' | 'reference' | 'prototype';
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
  const ours = ourVerifier(material);
  await ours.prefetch();
  const proto = prototypeVerifier(material);
  const protoCache = prototypeVerifier(material, { cache: 10_000 });

  const check = (ok: boolean) => {
    if (!ok) throw new Error('verification failed during the benchmark');
  };
  const variants: MicroVariant[] = [
    { name: 'node:crypto `crypto.verify` (KeyObject), sync', mode: 'sync', group: 'baseline', run: () => check(cryptoVerify(hash, input, verifyKey, signature)) },
    {
      name: 'node:crypto `crypto.verify` with a callback (threadpool)',
      mode: '16',
      group: 'decomposition',
      run: () => new Promise<void>((resolve, reject) => cryptoVerify(hash, input, verifyKey, signature, (error, ok) => (error ? reject(error) : (check(ok), resolve())))),
    },
    { name: 'WebCrypto `crypto.subtle.verify` (CryptoKey)', mode: 'seq', group: 'decomposition', run: async () => check(await webcrypto.subtle.verify(subtleAlg, cryptoKey as never, signature, input)) },
    { name: 'WebCrypto `crypto.subtle.verify` (CryptoKey)', mode: '16', group: 'decomposition', run: async () => check(await webcrypto.subtle.verify(subtleAlg, cryptoKey as never, signature, input)) },
    { name: 'jose `jwtVerify` (CryptoKey)', mode: 'seq', group: 'reference', run: () => jwtVerify(token, cryptoKey, joseOptions) },
    { name: 'jose `jwtVerify` (CryptoKey)', mode: '16', group: 'reference', run: () => jwtVerify(token, cryptoKey, joseOptions) },
    { name: '**ours** `verifier.verify` (@tessera/verify)', mode: 'seq', group: 'ours', run: () => ours.verify(token) },
    { name: '**ours** `verifier.verify` (@tessera/verify)', mode: '16', group: 'ours', run: () => ours.verify(token) },
    { name: 'PROTOTYPE node fast path (KeyObject + sync `crypto.verify`, same checks)', mode: 'seq', group: 'prototype', run: () => proto.verify(token) },
    { name: 'PROTOTYPE node fast path (KeyObject + sync `crypto.verify`, same checks)', mode: '16', group: 'prototype', run: () => proto.verify(token) },
    { name: 'PROTOTYPE fast path + verified-token cache (same token every call)', mode: 'seq', group: 'prototype', run: () => protoCache.verify(token) },
    { name: 'PROTOTYPE fast path + verified-token cache (same token every call)', mode: '16', group: 'prototype', run: () => protoCache.verify(token) },
  ];
  if (fastJwtCreateVerifier) {
    const fast = fastJwtCreateVerifier({
      key: material.pem,
      algorithms: [alg],
      allowedIss: ISSUER,
      allowedAud: AUDIENCE,
      checkTyp: 'at+jwt',
      requiredClaims: REQUIRED_CLAIMS,
      clockTolerance: CLOCK_TOLERANCE_S * 1000,
      cache: false,
    });
    variants.splice(6, 0, { name: `fast-jwt ${packageVersion('fast-jwt')} (key parsed once, cache off), sync`, mode: 'sync', group: 'reference', run: () => fast(token) });
  }
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
    log(`${alg}: round ${round + 1}/${rounds}: raw ${fmtK(roundOps[0]!)}/s, ours seq ${fmtK(roundOps[variants.findIndex((v) => v.group === 'ours')]!)}/s`);
  }
  ours.close();
  return variants.map((variant, i) => ({
    alg,
    name: variant.name,
    mode: variant.mode,
    group: variant.group,
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
  ours: '(a) **Fastify + `@tessera/verify/fastify`** (ours, jose/WebCrypto)',
  'fastify-jwt': '(b) Fastify + `@fastify/jwt` (static public key, cache off)',
  'express-jsonwebtoken-pem': '(c) Express 5 + `jsonwebtoken.verify(token, PEM)` (design notes)',
  'proto-fast': '(d) PROTOTYPE: Fastify + our plugin + node fast path',
  'proto-cache': '(e) PROTOTYPE: (d) + verified-token cache (one token reused: best case)',
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
  const busy0 = machineBusy();
  const ours0 = pidJiffies(process.pid) + pidJiffies(child.pid!);
  const result = (await autocannon({ url, connections, duration: seconds, headers })) as AutocannonResult;
  const ours1 = pidJiffies(process.pid) + pidJiffies(child.pid!);
  const busy1 = machineBusy();
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

/** Busy and total jiffies of the whole machine (/proc/stat). */
function machineBusy(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const total = fields.reduce((a, b) => a + b, 0);
  const idle = fields[3]! + (fields[4] ?? 0);
  return { busy: total - idle, total };
}

/** utime + stime of a process, all its threads, in jiffies. */
function pidJiffies(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

/** Waits (within the run's budget) until other processes use under 0.3 core for 1 s. */
async function waitForQuiet(budget: { budgetMs: number }): Promise<void> {
  while (budget.budgetMs > 0) {
    const a = machineBusy();
    const ours0 = pidJiffies(process.pid);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const b = machineBusy();
    const others = Math.max(0, b.busy - a.busy - (pidJiffies(process.pid) - ours0)) / ((b.total - a.total) / NPROC);
    if (others < 0.3) return;
    budget.budgetMs -= 1000;
    log(`waiting for other processes to leave the CPU (${others.toFixed(2)} cores busy; ${Math.max(0, budget.budgetMs / 1000).toFixed(0)} s of waiting left)`);
  }
}

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
    const goal = (alg: Alg) => {
      const rows = micro.filter((r) => r.alg === alg && r.group === 'ours');
      return rows.map((r) => `${r.mode === 'seq' ? 'seq' : '16 in flight'} ${r.ratio.toFixed(2)}×`).join(', ');
    };
    const algs = [...new Set(micro.map((r) => r.alg))];
    lines.push(`Goal "ours ≥ 0.9× raw crypto, no cache": ${algs.map((alg) => `${alg} ${goal(alg)}`).join('; ')}.`);
    lines.push(`Prototype self-test: ${input.selfTest.agreed}/${input.selfTest.total} accept/refuse cases give the same outcome (and error code) as createVerifier.`);
    lines.push('');
  }
  if (http.length) {
    const by = (kind: HttpKind) => http.find((r) => r.kind === kind);
    const ours = by('ours');
    lines.push(`### 2. HTTP, RS256 Bearer token: server child pinned to 1 CPU, autocannon in the bench process on CPU 1, ${args.connections} connections, loopback; ${args.duration} s per server measured as 2 passes of ${Number(args.duration) / 2} s (order A…F then F…A, each after ${args.warmup} s warm-up); req/s over both passes, p50/p99 the worse pass`);
    lines.push('');
    lines.push('| server | req/s | (pass 1 / pass 2) | p50 ms | p99 ms | server CPU ms/req | ours ÷ this (req/s) | ours ÷ this (req per CPU s) | other procs (cores) |');
    lines.push('|---|---:|---|---:|---:|---:|---:|---:|---:|');
    for (const row of http) {
      const ratio = ours ? (ours.reqPerSec / row.reqPerSec).toFixed(2) : '';
      const cpuRatio = ours ? (row.serverCpuMsPerReq / ours.serverCpuMsPerReq).toFixed(2) : '';
      const bad = row.non2xx || row.errors ? ` ⚠ ${row.non2xx} non-2xx, ${row.errors} errors` : '';
      lines.push(`| ${row.label}${bad} | ${fmtK(row.reqPerSec)} | ${row.perPass.map(fmtK).join(' / ')} | ${row.p50} | ${row.p99} | ${row.serverCpuMsPerReq.toFixed(3)} | ${ratio} | ${cpuRatio} | ${row.otherCores.toFixed(2)} |`);
    }
    lines.push('');
    const jwt = by('fastify-jwt');
    const pem = by('express-jsonwebtoken-pem');
    const proto = by('proto-fast');
    const goals: string[] = [];
    const versus = (a: HttpResult, b: HttpResult, goal: number) => {
      const byRate = a.reqPerSec / b.reqPerSec;
      const byCpu = b.serverCpuMsPerReq / a.serverCpuMsPerReq;
      return `${byRate.toFixed(2)}× req/s (goal ≥ ${goal}×: ${byRate >= goal ? 'met' : 'NOT met'}), ${byCpu.toFixed(2)}× req per server CPU second (${byCpu >= goal ? 'met' : 'NOT met'}), p99 ${a.p99} vs ${b.p99} ms (${a.p99 <= b.p99 ? 'no worse' : 'WORSE'})`;
    };
    if (ours && jwt) goals.push(`ours vs @fastify/jwt: ${versus(ours, jwt, 1.2)}`);
    if (ours && pem) goals.push(`ours vs Express+jsonwebtoken-PEM: ${versus(ours, pem, 5)}`);
    if (proto && jwt) goals.push(`PROTOTYPE fast path vs @fastify/jwt: ${versus(proto, jwt, 1.2)}`);
    if (proto && pem) goals.push(`PROTOTYPE fast path vs Express+jsonwebtoken-PEM: ${versus(proto, pem, 5)}`);
    for (const goal of goals) lines.push(`- ${goal}`);
    lines.push('');
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

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

function fmtK(value: number): string {
  return value >= 1000 ? `${(value / 1000).toFixed(1)}k` : value.toFixed(0);
}

// ====================================================================== entry (last, so every const above is initialised)

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(SELF)) {
  if (args.serve) await serve(args.serve as HttpKind);
  else await main();
}
