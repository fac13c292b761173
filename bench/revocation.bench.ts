// Revocation feed figures (issue 10), in one run on one machine:
//  1. Cold start: a verifier's prefetch() against 10,000 and 100,000 revocations, over SSE
//     and over paged JSON, with its heap growth; baseline: a bare fetch + JSON.parse of
//     the same pages (what any client must pay to read them).
//  2. Logout → refusal: time from the logout's 204 until the last of N streaming
//     verifiers refuses the token (N = 1, 100, 1,000), quiet and while a second client
//     floods the feed (32 held streams + back-to-back cold JSON pages from another address).
//  3. Server memory per idle stream: RSS of a real `tessera serve` process before and
//     after opening N streams.
// Run: node --expose-gc --conditions=tessera-source --import tsx bench/revocation.bench.ts
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createAuthServer } from '@tessera/server';
import { createVerifier, type Verifier } from '@tessera/verify';
import { median, percentileOf } from './lib/percentiles.js';

const ISSUER = 'http://localhost:4000';
const gc = (globalThis as { gc?: () => void }).gc ?? (() => {});

async function server(extra: Record<string, unknown> = {}) {
  const s = await createAuthServer({ port: 0, dataDir: 'memory://', log: false, issuer: ISSUER, rateLimit: 'ip=1000000/1m,user=1000000/1m', trustProxy: true, feedStreamsPerAddress: 5000, ...extra });
  const url = await s.listen();
  const post = async (path: string, body?: unknown, token?: string) => {
    const r = await fetch(url + path, { method: 'POST', headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) }, body: body ? JSON.stringify(body) : undefined });
    return r.status === 204 ? undefined : ((await r.json()) as Record<string, string>);
  };
  let n = 0;
  const signUp = async () => {
    const username = `bench${n++}`;
    const reg = await post('/auth/register', { username, password: 'long enough pw' });
    const pair = await post('/auth/login', { username, password: 'long enough pw' });
    return { userId: (reg as unknown as { user: { id: string } }).user.id, pair: pair! };
  };
  /** `count` revocations in one logout-all (sessions bulk-inserted, revoked through the route). */
  const backlog = async (count: number) => {
    const { userId, pair } = await signUp();
    const now = new Date();
    await s.context.store.db.query(
      `INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, refresh_hash, refresh_issued_at, refresh_expires_at)
       SELECT gen_random_uuid(), $1, $2, $2, $3, md5(random()::text), $2, $3 FROM generate_series(1, $4)`,
      [userId, now, new Date(now.getTime() + 86_400_000), count - 1],
    );
    await post('/auth/logout-all', undefined, pair.access_token);
  };
  return { s, url, post, signUp, backlog };
}

function verifier(url: string, stream: boolean): Verifier {
  return createVerifier({ issuer: ISSUER, audience: 'tessera-api', jwksUri: `${url}/.well-known/jwks.json`, revocation: { url: `${url}/auth/revocations`, stream }, jwksTimeout: 60 });
}

async function coldStart(sizes: number[]) {
  const rows: string[] = [];
  for (const size of sizes) {
    const t = await server();
    await t.backlog(size);
    // Baseline: read every page with fetch + JSON.parse, nothing kept.
    const base: number[] = [];
    for (let i = 0; i < 3; i++) {
      const start = performance.now();
      let cursor = '';
      for (;;) {
        const page = (await (await fetch(`${t.url}/auth/revocations${cursor ? `?since=${cursor}` : ''}`)).json()) as { cursor: string; more: boolean };
        cursor = page.cursor;
        if (!page.more) break;
      }
      base.push(performance.now() - start);
    }
    for (const stream of [true, false]) {
      const times: number[] = [];
      const heaps: number[] = [];
      for (let i = 0; i < 3; i++) {
        gc();
        const heap = process.memoryUsage().heapUsed;
        const v = verifier(t.url, stream);
        const start = performance.now();
        await v.prefetch();
        times.push(performance.now() - start);
        gc();
        heaps.push(process.memoryUsage().heapUsed - heap);
        if (v.revocationStatus()!.remembered < size) throw new Error('not all learned');
        v.close();
      }
      const ms = median(times);
      rows.push(`| ${size.toLocaleString('en')} | ${stream ? 'SSE' : 'JSON pages'} | ${ms.toFixed(0)} ms | ${median(base).toFixed(0)} ms | ${(ms / median(base)).toFixed(2)} | ${(median(heaps) / 1e6).toFixed(1)} MB (${(median(heaps) / size).toFixed(0)} B each) |`);
    }
    await t.s.close();
  }
  console.log('\n| revocations | verifier reads by | prefetch() (median of 3) | bare fetch + parse of the pages | ratio | verifier heap after |\n|---:|---|---:|---:|---:|---|');
  for (const row of rows) console.log(row);
}

async function latency(counts: number[]) {
  const rows: string[] = [];
  for (const count of counts) {
    for (const flood of [false, true]) {
      const t = await server();
      await t.backlog(20_000);
      const verifiers = Array.from({ length: count }, () => verifier(t.url, true));
      // In batches: a thousand connections at once overflow the listen backlog.
      for (let i = 0; i < verifiers.length; i += 100) await Promise.all(verifiers.slice(i, i + 100).map((v) => v.prefetch()));
      const stopFlood: (() => void)[] = [];
      if (flood) {
        const held: AbortController[] = [];
        for (let i = 0; i < 32; i++) {
          const c = new AbortController();
          held.push(c);
          await fetch(`${t.url}/auth/revocations`, { headers: { accept: 'text/event-stream', 'x-forwarded-for': '198.51.100.66' }, signal: c.signal });
        }
        let on = true;
        const loops = Array.from({ length: 8 }, async () => {
          while (on) await (await fetch(`${t.url}/auth/revocations`, { headers: { 'x-forwarded-for': '198.51.100.66' } })).arrayBuffer();
        });
        stopFlood.push(() => {
          on = false;
          for (const c of held) c.abort();
          void Promise.allSettled(loops);
        });
      }
      const samples: number[] = [];
      for (let round = 0; round < 7; round++) {
        const { pair } = await t.signUp();
        await Promise.all(verifiers.map((v) => v.verify(pair.access_token!)));
        await t.post('/auth/logout', undefined, pair.access_token);
        const start = performance.now();
        const pending = new Set(verifiers);
        while (pending.size > 0 && performance.now() - start < 10_000) {
          for (const v of [...pending]) {
            if (await v.verify(pair.access_token!).then(() => false, () => true)) pending.delete(v);
          }
          if (pending.size > 0) await new Promise((resolve) => setTimeout(resolve, 2));
        }
        samples.push(performance.now() - start);
      }
      for (const stop of stopFlood) stop();
      rows.push(`| ${count} | ${flood ? 'yes' : 'no'} | ${median(samples).toFixed(1)} ms | ${percentileOf(samples, 99).toFixed(1)} ms |`);
      console.log(rows.at(-1));
      for (const v of verifiers) v.close();
      await t.s.close();
    }
  }
  console.log('\n| verifiers (streaming) | flood | logout 204 → last verifier refuses, median (7 logouts) | max |\n|---:|---|---:|---:|');
  for (const row of rows) console.log(row);
}

async function streamMemory(counts: number[]) {
  // A data directory (initialised out of process), not memory://: an in-process initdb
  // leaves hundreds of MB that the process gives back at random, drowning the figure.
  const dir = mkdtempSync(join(tmpdir(), 'tessera-feed-bench-'));
  const child = spawn(process.execPath, ['packages/cli/dist/bin.js', 'serve', '--port', '0', '--data-dir', dir, '--feed-streams-per-address', '100000', '--feed-max-streams', '100000'], {
    env: { ...process.env, TESSERA_LOG_LEVEL: 'silent' },
  });
  const url = await new Promise<string>((resolve) => {
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
      const m = /listening on (\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
  });
  const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) * 1024;
  await new Promise((resolve) => setTimeout(resolve, 3000));
  const base = rss();
  const held: AbortController[] = [];
  const rows: string[] = [];
  for (const target of counts) {
    while (held.length < target) {
      const c = new AbortController();
      held.push(c);
      const r = await fetch(`${url}/auth/revocations`, { headers: { accept: 'text/event-stream' }, signal: c.signal });
      void r.body?.cancel; // held open, read by nobody but the kernel
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
    const grown = rss() - base;
    rows.push(`| ${target.toLocaleString('en')} | ${(grown / 1e6).toFixed(1)} MB | ${(grown / target / 1024).toFixed(1)} KiB |`);
  }
  for (const c of held) c.abort();
  child.kill('SIGTERM');
  await new Promise((resolve) => child.once('exit', resolve));
  rmSync(dir, { recursive: true, force: true });
  console.log(`\n| idle SSE streams | server RSS growth (base ${(base / 1e6).toFixed(0)} MB) | per stream |\n|---:|---:|---:|`);
  for (const row of rows) console.log(row);
}

console.log(`# revocation.bench.ts, ${new Date().toISOString()}, loadavg ${(await import('node:os')).loadavg().map((l) => l.toFixed(2)).join(' ')}`);
const only = process.argv[2];
if (!only || only === 'cold') await coldStart([10_000, 100_000]);
if (!only || only === 'latency') await latency([1, 100, 1000]);
if (!only || only === 'memory') await streamMemory([1000, 4000]);
process.exit(0);
