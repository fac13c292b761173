/**
 * What DPoP costs, in one run against one `tessera serve` child on the embedded
 * database: login with and without a proof, refresh of a bound session (a fresh proof
 * each time) against an unbound one, and a business-server request (Fastify +
 * `@tessera/verify`) with `DPoP <token>` + proof against `Bearer <token>`. Proofs are
 * signed before each phase (a client's cost, not the server's), so the figures are
 * what the servers pay to check them. Phases alternate unbound / bound twice and the
 * two runs of each are averaged, since these 2-core machines are noisy.
 *
 *   node --conditions=tessera-source --import tsx bench/dpop.bench.ts [--duration S] [--connections N]
 *
 * Goal (issue 15): a bound refresh at least 0.8x an unbound one.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { accessTokenHash, createVerifier } from '@tessera/verify';
import { tesseraAuth } from '@tessera/verify/fastify';
import autocannonUntyped from 'autocannon';
import Fastify from 'fastify';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');
const CLI = join(ROOT, 'packages/cli/dist/bin.js');
const { values: args } = parseArgs({ options: { duration: { type: 'string', default: '6' }, connections: { type: 'string', default: '8' } } });
const SECONDS = Number(args.duration);
const CONNECTIONS = Number(args.connections);
const PASSWORD = 'correct horse battery staple';

type Autocannon = (options: Record<string, unknown>) => Promise<{ requests: { average: number }; latency: { p99: number }; non2xx: number; errors: number }>;
const autocannon = autocannonUntyped as unknown as Autocannon;

interface Figure {
  rps: number;
  p99: number;
  failed: number;
}

const log = (message: string) => process.stderr.write(`[dpop bench] ${message}\n`);

async function startServer(dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CLI, 'serve', '--port', '0', '--data-dir', dataDir, '--rate-limit', 'ip=100000000/1m,user=100000000/1m', '--log-level', 'silent'], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const issuer = /issuer (http:\/\/\S+)\)/.exec(out);
      if (issuer) resolve(issuer[1]!);
    });
    child.once('exit', (code) => reject(new Error(`server exited with ${code}: ${out}`)));
  });
  return { child, url };
}

/** A client key and a stock of proofs signed ahead of the phase that uses them. */
async function clientKey() {
  const { privateKey, publicKey } = await generateKeyPair('ES256');
  const jwk = (await exportJWK(publicKey)) as JWK;
  const sign = (key: CryptoKey, claims: Record<string, unknown>) =>
    new SignJWT({ ...claims, jti: randomUUID(), iat: Math.floor(Date.now() / 1000) }).setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk }).sign(key);
  return {
    proofs: async (count: number, claims: Record<string, unknown>) => Promise.all(Array.from({ length: count }, () => sign(privateKey, claims))),
  };
}

/** Enough proofs for a phase at `rps` for `SECONDS`, with room to spare. */
const stock = (rps: number) => Math.ceil(rps * SECONDS * 1.6) + 200;

async function run(url: string, path: string, method: string, build: () => { headers: Record<string, string>; body?: string } | null, onBody?: (status: number, body: string) => void): Promise<Figure> {
  const result = await autocannon({
    url,
    connections: CONNECTIONS,
    duration: SECONDS,
    requests: [
      {
        method,
        path,
        setupRequest: (req: Record<string, unknown>) => {
          const built = build();
          return built ? { ...req, ...built } : null;
        },
        ...(onBody ? { onResponse: (status: number, body: string) => onBody(status, body) } : {}),
      },
    ],
  });
  return { rps: result.requests.average, p99: result.latency.p99, failed: result.non2xx + result.errors };
}

async function signUp(url: string, username: string): Promise<void> {
  const res = await fetch(`${url}/auth/register`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password: PASSWORD }) });
  if (res.status !== 201) throw new Error(`register: ${res.status} ${await res.text()}`);
}

async function login(url: string, username: string, dpop?: string): Promise<{ access_token: string; refresh_token: string }> {
  const res = await fetch(`${url}/auth/login`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(dpop ? { dpop } : {}) },
    body: JSON.stringify({ username, password: PASSWORD }),
  });
  if (res.status !== 200) throw new Error(`login: ${res.status} ${await res.text()}`);
  return (await res.json()) as { access_token: string; refresh_token: string };
}

function mean(figures: Figure[]): Figure {
  const n = figures.length;
  return { rps: figures.reduce((s, f) => s + f.rps, 0) / n, p99: figures.reduce((s, f) => s + f.p99, 0) / n, failed: figures.reduce((s, f) => s + f.failed, 0) };
}

async function main(): Promise<void> {
  const dataDir = await mkdtemp(join(os.tmpdir(), 'tessera-dpop-bench-'));
  const server = await startServer(dataDir);
  const key = await clientKey();
  const results = new Map<string, Figure[]>();
  const record = (name: string, figure: Figure) => results.set(name, [...(results.get(name) ?? []), figure]);
  try {
    const users = Array.from({ length: 16 }, (_, i) => `bench${i}`);
    for (const u of users) await signUp(server.url, u);
    let next = 0;
    const loginBody = () => JSON.stringify({ username: users[next++ % users.length], password: PASSWORD });

    // Login: argon2 dominates; the proof is one ES256 verify on top.
    for (let round = 0; round < 2; round++) {
      log(`round ${round + 1}: login`);
      record('login, no proof', await run(server.url, '/auth/login', 'POST', () => ({ headers: { 'content-type': 'application/json' }, body: loginBody() })));
      const proofs = await key.proofs(stock(200), { htm: 'POST', htu: `${server.url}/auth/login` });
      record('login, with a proof', await run(server.url, '/auth/login', 'POST', () => ({ headers: { 'content-type': 'application/json', dpop: proofs.pop()! }, body: loginBody() })));
    }

    // Refresh: 64 sessions each, every response's refresh token goes back to the queue.
    const refreshPhase = async (bound: boolean): Promise<Figure> => {
      const loginProofs = bound ? await key.proofs(64, { htm: 'POST', htu: `${server.url}/auth/login` }) : [];
      const free: string[] = [];
      for (let i = 0; i < 64; i++) free.push((await login(server.url, users[i % users.length]!, bound ? loginProofs[i] : undefined)).refresh_token);
      const proofs = bound ? await key.proofs(stock(1500), { htm: 'POST', htu: `${server.url}/auth/refresh` }) : [];
      return run(
        server.url,
        '/auth/refresh',
        'POST',
        () => {
          const token = free.shift();
          if (!token) return null;
          return { headers: { authorization: `Bearer ${token}`, ...(bound ? { dpop: proofs.pop()! } : {}) } };
        },
        (status, body) => {
          if (status === 200) free.push((JSON.parse(body) as { refresh_token: string }).refresh_token);
        },
      );
    };
    for (let round = 0; round < 2; round++) {
      log(`round ${round + 1}: refresh`);
      record('refresh, unbound session', await refreshPhase(false));
      record('refresh, bound session (fresh proof each)', await refreshPhase(true));
    }

    // A business server: Fastify + @tessera/verify (Node engine, no token cache), in this process.
    const verifier = createVerifier({ issuer: server.url, audience: 'tessera-api', jwksUri: `${server.url}/.well-known/jwks.json` });
    const api = Fastify();
    const apiUrl = 'http://127.0.0.1:4999';
    await api.register(tesseraAuth, { verifier, publicUrl: apiUrl });
    api.get('/api/profile', { preHandler: api.tessera.requireAuth }, async (request) => ({ username: request.auth!.username }));
    await api.listen({ port: 4999, host: '127.0.0.1' });
    try {
      const bearer = (await login(server.url, users[0]!)).access_token;
      const bound = (await login(server.url, users[1]!, (await key.proofs(1, { htm: 'POST', htu: `${server.url}/auth/login` }))[0])).access_token;
      const ath = await accessTokenHash(bound);
      for (let round = 0; round < 2; round++) {
        log(`round ${round + 1}: business server`);
        record('business request, Bearer', await run(apiUrl, '/api/profile', 'GET', () => ({ headers: { authorization: `Bearer ${bearer}` } })));
        const proofs = await key.proofs(stock(3000), { htm: 'GET', htu: `${apiUrl}/api/profile`, ath });
        record('business request, DPoP + proof', await run(apiUrl, '/api/profile', 'GET', () => ({ headers: { authorization: `DPoP ${bound}`, dpop: proofs.pop()! } })));
      }
    } finally {
      await api.close();
      verifier.close();
    }
  } finally {
    server.child.kill('SIGTERM');
    await new Promise((resolve) => server.child.once('exit', resolve));
    await rm(dataDir, { recursive: true, force: true });
  }

  const rows = [...results].map(([name, figures]) => ({ name, ...mean(figures) }));
  const ratio = (a: string, b: string) => rows.find((r) => r.name === a)!.rps / rows.find((r) => r.name === b)!.rps;
  const lines = [
    `Date: ${new Date().toISOString()}; nproc ${os.cpus().length}; load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; ${CONNECTIONS} connections, ${SECONDS} s a phase, 2 rounds`,
    '',
    '| phase | req/s | p99 ms | failed |',
    '|---|---:|---:|---:|',
    ...rows.map((r) => `| ${r.name} | ${r.rps.toFixed(0)} | ${r.p99.toFixed(1)} | ${r.failed} |`),
    '',
    `login with a proof ÷ without: ${ratio('login, with a proof', 'login, no proof').toFixed(2)}`,
    `bound refresh ÷ unbound: ${ratio('refresh, bound session (fresh proof each)', 'refresh, unbound session').toFixed(2)} (goal ≥ 0.80)`,
    `business request DPoP ÷ Bearer: ${ratio('business request, DPoP + proof', 'business request, Bearer').toFixed(2)}`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

await main();
