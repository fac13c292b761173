import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SERVE_FLAGS } from '../../packages/cli/src/options.js';
import { createDatabase, freePort, type PostgresServer, startPostgres } from '../support/postgres_server.js';
import { type RedisServer, startRedis } from '../support/redis_server.js';
import { type ServeProcess, serveProcess } from '../support/serve_process.js';

const root = new URL('../../', import.meta.url);

/**
 * Runs Debian's nginx with the repository's own `deploy/nginx.conf`, its upstream
 * addresses and listen port swapped for this test's: what `docker compose up` runs,
 * minus the containers (no Docker engine on these machines).
 */
async function startNginx(upstreams: string[]): Promise<{ url: string; stop(): Promise<void> }> {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-nginx-'));
  const port = await freePort();
  const site = readFileSync(new URL('deploy/nginx.conf', root), 'utf8')
    .replace(/^\s*server tessera-[ab]:4000.*$/gm, '')
    .replace(/upstream tessera \{/, `upstream tessera {\n${upstreams.map((u) => `  server ${u} max_fails=2 fail_timeout=5s;`).join('\n')}`)
    .replace(/listen 8080;/, `listen 127.0.0.1:${port};`);
  assert.match(site, new RegExp(`server ${upstreams[0]}`), 'the upstream block was found and rewritten');
  writeFileSync(join(dir, 'site.conf'), site);
  writeFileSync(
    join(dir, 'nginx.conf'),
    [
      `pid ${dir}/nginx.pid;`,
      `error_log ${dir}/error.log warn;`,
      'events { worker_connections 256; }',
      'http {',
      '  access_log off;',
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map((name) => `  ${name}_temp_path ${dir}/${name};`),
      `  include ${dir}/site.conf;`,
      '}',
    ].join('\n'),
  );
  // Debian puts nginx in /usr/sbin, which a non-root PATH often lacks; `-e` keeps it off /var/log.
  const bin = existsSync('/usr/sbin/nginx') ? '/usr/sbin/nginx' : 'nginx';
  const child: ChildProcess = spawn(bin, ['-p', dir, '-e', join(dir, 'error.log'), '-c', join(dir, 'nginx.conf'), '-g', 'daemon off; worker_processes 1;'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  child.on('error', (error) => (stderr += `${error.message} (install Debian's nginx-light: .ci/run does)`));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null || child.pid === undefined) throw new Error(`nginx did not run: ${stderr}`);
    const ok = await fetch(`${url}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    if (Date.now() > deadline) throw new Error(`nginx did not start: ${stderr}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return {
    url,
    stop: () =>
      new Promise<void>((resolve) => {
        const done = () => {
          rmSync(dir, { recursive: true, force: true });
          resolve();
        };
        if (child.exitCode !== null) return done();
        child.once('exit', done);
        child.kill('SIGQUIT');
      }),
  };
}

const post = async (url: string, body: unknown, headers: Record<string, string> = {}) => {
  const res = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) });
  return { status: res.status, body: res.status === 204 ? undefined : ((await res.json().catch(() => undefined)) as Record<string, unknown>) };
};

const FEED_SECRET = 'proxy-test-feed-secret-0123456789';

describe('the README cluster: two instances behind the repository nginx.conf, on PostgreSQL and Redis', () => {
  let postgres: PostgresServer;
  let redis: RedisServer;
  let a: ServeProcess;
  let b: ServeProcess;
  let proxy: { url: string; stop(): Promise<void> };

  before(async () => {
    [postgres, redis] = await Promise.all([startPostgres(), startRedis()]);
    const databaseUrl = await createDatabase(postgres.url, 'proxy');
    // As docker-compose.yml configures them: environment variables only.
    const env = {
      DATABASE_URL: databaseUrl,
      REDIS_URL: redis.url,
      TESSERA_ISSUER: 'http://localhost:8080',
      TESSERA_TRUST_PROXY: 'true',
      TESSERA_RATE_LIMIT: 'ip=20/1m,user=100/1m',
      TESSERA_FEED_SECRET: FEED_SECRET,
    };
    [a, b] = await Promise.all([serveProcess([], env), serveProcess([], env)]);
    proxy = await startNginx([new URL(a.url).host, new URL(b.url).host]);
  });
  after(async () => {
    await proxy?.stop();
    await Promise.all([a?.stop(), b?.stop()]);
    await Promise.all([postgres?.stop(), redis?.stop()]);
  });

  test('every environment variable docker-compose.yml sets is one `tessera serve` reads', () => {
    const compose = readFileSync(new URL('docker-compose.yml', root), 'utf8');
    const block = compose.slice(compose.indexOf('tessera-a:'), compose.indexOf('tessera-b:'));
    const keys = [...block.matchAll(/^ {6}([A-Z][A-Z0-9_]+):/gm)].map((m) => m[1]!);
    assert.ok(keys.length >= 4, `found ${keys.join(', ')}`);
    const known = new Set<string>(Object.values(SERVE_FLAGS).map((flag) => flag.env));
    for (const key of keys) assert.ok(known.has(key), `${key} is not read by tessera serve`);
    const dockerfile = readFileSync(new URL('Dockerfile', root), 'utf8');
    for (const key of ['HOST', 'PORT']) {
      assert.match(dockerfile, new RegExp(`${key}=`));
      assert.ok(known.has(key));
    }
  });

  test('through the proxy: register, log in, refresh round-robin over both instances, one session', async () => {
    const username = `proxy-${process.pid}`;
    assert.equal((await post(`${proxy.url}/auth/register`, { username, password: 'long enough pw' })).status, 201);
    const login = await post(`${proxy.url}/auth/login`, { username, password: 'long enough pw' });
    assert.equal(login.status, 200);
    let refresh = login.body!.refresh_token as string;
    for (let i = 0; i < 6; i++) {
      const next = await post(`${proxy.url}/auth/refresh`, {}, { authorization: `Bearer ${refresh}` });
      assert.equal(next.status, 200, `refresh ${i}`);
      refresh = next.body!.refresh_token as string;
    }
    const sessions = await fetch(`${proxy.url}/auth/sessions`, { headers: { authorization: `Bearer ${(await post(`${proxy.url}/auth/refresh`, {}, { authorization: `Bearer ${refresh}` })).body!.access_token}` } });
    assert.equal(((await sessions.json()) as { sessions: unknown[] }).sessions.length, 1);
  });

  test('the revocation feed streams through the proxy: a logout arrives within a second', async () => {
    const username = `feed-${process.pid}`;
    await post(`${proxy.url}/auth/register`, { username, password: 'long enough pw' });
    const abort = new AbortController();
    const stranger = await fetch(`${proxy.url}/auth/revocations`, { headers: { accept: 'text/event-stream' } });
    assert.equal(stranger.status, 401, 'the feed answers only its secret');
    const feed = await fetch(`${proxy.url}/auth/revocations`, { headers: { accept: 'text/event-stream', authorization: `Bearer ${FEED_SECRET}` }, signal: abort.signal });
    assert.equal(feed.status, 200);
    const reader = feed.body!.pipeThrough(new TextDecoderStream()).getReader();
    try {
      const login = await fetch(`${a.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password: 'long enough pw' }) });
      const pair = (await login.json()) as { access_token: string; session_id: string };
      const loggedOut = Date.now();
      const logout = await fetch(`${b.url}/auth/logout`, { method: 'POST', headers: { authorization: `Bearer ${pair.access_token}` } });
      assert.equal(logout.status, 204);
      let text = '';
      while (!text.includes(pair.session_id)) {
        const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`no event within 1 s; got ${text}`)), Math.max(1, 1000 - (Date.now() - loggedOut))));
        const { value, done } = await Promise.race([reader.read(), timeout]);
        if (done) break;
        text += value;
      }
      assert.ok(text.includes(pair.session_id));
    } finally {
      abort.abort();
    }
  });

  test('an instance stopped behind the proxy: requests keep succeeding on the other', async () => {
    await a.stop();
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await fetch(`${proxy.url}/readyz`)).status);
    const username = `failover-${process.pid}`;
    statuses.push((await post(`${proxy.url}/auth/register`, { username, password: 'long enough pw' }, {})).status);
    assert.deepEqual(statuses, [200, 200, 200, 200, 200, 200, 201]);
  });

  test('a client cannot dodge the per-address login limit by sending its own X-Forwarded-For', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 24; i++) {
      const spoofed = { 'x-forwarded-for': `198.51.100.${i}` };
      statuses.push((await post(`${proxy.url}/auth/login`, { username: `nobody-${i}`, password: 'wrong password!!' }, spoofed)).status);
    }
    // ip=20/1m for 127.0.0.1, whatever address the client claims (5 attempts were
    // made by the tests before): honouring the header would give 24 × 401.
    assert.ok(statuses.filter((s) => s === 429).length >= 4, `statuses: ${statuses.join(', ')}`);
    assert.ok(statuses.every((s) => s === 401 || s === 429), `statuses: ${statuses.join(', ')}`);
  });
});
