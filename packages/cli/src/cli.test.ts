import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { decodeJwt } from 'jose';

/** The real `tessera` command, as `npx tessera` runs it (built by `npm install`/`npm test`). */
const BIN = new URL('../dist/bin.js', import.meta.url).pathname;
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-cli-'));
  dirs.push(dir);
  return dir;
}

const QUIET = { TESSERA_LOG_LEVEL: 'silent', TESSERA_RATE_LIMIT: 'ip=10000/1m,user=10000/1m' };

/** Runs the CLI to completion. */
function run(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...QUIET, ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** Starts `tessera serve` and waits for the URL it prints. */
async function serve(args: string[], env: Record<string, string> = {}): Promise<{ child: ChildProcess; url: string; stop(): Promise<number | null> }> {
  const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', ...args], { env: { ...process.env, ...QUIET, ...env } });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d) => {
      out += d;
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
  });
  return {
    child,
    url,
    stop: () =>
      new Promise((resolve) => {
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
      }),
  };
}

async function post(url: string, body: unknown, token?: string) {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: res.status === 204 ? undefined : await res.json() };
}

describe('tessera CLI', () => {
  test('help exits 0; no command, an unknown command or a bad flag exits 2 with usage', async () => {
    const help = await run(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /serve/);
    const serveHelp = await run(['serve', '--help']);
    assert.equal(serveHelp.code, 0);
    for (const flag of ['--port', '--data-dir', '--database-url', '--issuer', '--alg', '--access-ttl', '--refresh-ttl', '--reuse-grace', '--session-policy', '--signup', '--private-key', '--rate-limit', 'TESSERA_REUSE_GRACE']) {
      assert.ok(serveHelp.stdout.includes(flag), `serve --help mentions ${flag}`);
    }
    assert.equal((await run([])).code, 2);
    const unknown = await run(['frobnicate']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /unknown command/);
    for (const args of [['serve', '--alg', 'HS256'], ['serve', '--port', 'abc'], ['serve', '--access-ttl', 'soon'], ['serve', '--no-such-flag'], ['serve', '--rate-limit', 'ip=0/1m']]) {
      const bad = await run([...args, '--data-dir', tempDir()]);
      assert.equal(bad.code, 2, args.join(' '));
      assert.match(bad.stderr, /tessera: /);
    }
  });

  test('environment twins configure serve, and a flag wins over its variable', async () => {
    const dir = tempDir();
    const server = await serve(['--access-ttl', '45s'], { TESSERA_DATA_DIR: dir, TESSERA_ACCESS_TTL: '30s', TESSERA_ALG: 'ES256', TESSERA_ISSUER: 'http://localhost:9999' });
    try {
      assert.equal((await post(`${server.url}/auth/register`, { username: 'envuser', password: 'long enough pw' })).status, 201);
      const login = await post(`${server.url}/auth/login`, { username: 'envuser', password: 'long enough pw' });
      assert.equal(login.body.expires_in, 45);
      assert.equal(decodeJwt(login.body.access_token).iss, 'http://localhost:9999');
      const jwks = await (await fetch(`${server.url}/.well-known/jwks.json`)).json();
      assert.equal(jwks.keys[0].alg, 'ES256');
    } finally {
      assert.equal(await server.stop(), 0, 'SIGTERM is a clean exit');
    }
  });

  test('the data directory survives a restart: users, sessions and the signing key (same kid)', async () => {
    const dir = tempDir();
    const first = await serve(['--data-dir', dir]);
    await post(`${first.url}/auth/register`, { username: 'persistent', password: 'long enough pw' });
    const login = await post(`${first.url}/auth/login`, { username: 'persistent', password: 'long enough pw' });
    const kid = (await (await fetch(`${first.url}/.well-known/jwks.json`)).json()).keys[0].kid;
    assert.equal(await first.stop(), 0);
    assert.equal(statSync(dir).mode & 0o777, 0o700, 'the data directory is private to its owner');

    const second = await serve(['--data-dir', dir]);
    try {
      const jwks = await (await fetch(`${second.url}/.well-known/jwks.json`)).json();
      assert.deepEqual(jwks.keys.map((k: { kid: string }) => k.kid), [kid]);
      // The issuer follows the port, which changed: tokens of the first run have the old iss.
      // So the session is checked through the store, and the user logs in again.
      const again = await post(`${second.url}/auth/login`, { username: 'persistent', password: 'long enough pw' });
      assert.equal(again.status, 200);
      const sessions = await fetch(`${second.url}/auth/sessions`, { headers: { authorization: `Bearer ${again.body.access_token}` } });
      const list = (await sessions.json()).sessions.map((s: { id: string }) => s.id);
      assert.ok(list.includes(login.body.session_id), 'the session of the first run is still there');
    } finally {
      await second.stop();
    }
  });

  test('with a fixed issuer, a refresh token from before a restart still works', async () => {
    const dir = tempDir();
    const issuer = 'http://localhost:4999';
    const first = await serve(['--data-dir', dir, '--issuer', issuer]);
    await post(`${first.url}/auth/register`, { username: 'restarter', password: 'long enough pw' });
    const login = await post(`${first.url}/auth/login`, { username: 'restarter', password: 'long enough pw' });
    await first.stop();
    const second = await serve(['--data-dir', dir, '--issuer', issuer]);
    try {
      const refreshed = await post(`${second.url}/auth/refresh`, {}, login.body.refresh_token);
      assert.equal(refreshed.status, 200);
      assert.equal(refreshed.body.session_id, login.body.session_id);
    } finally {
      await second.stop();
    }
  });

  test('a data directory in use is refused clearly, with a non-zero exit, and nothing changes', async () => {
    const dir = tempDir();
    const server = await serve(['--data-dir', dir]);
    try {
      const second = await run(['serve', '--port', '0', '--data-dir', dir]);
      assert.equal(second.code, 1);
      assert.match(second.stderr, /in use by process \d+/);
      const migrate = await run(['migrate', '--data-dir', dir]);
      assert.equal(migrate.code, 1);
      assert.match(migrate.stderr, /in use/);
      const health = await fetch(`${server.url}/readyz`);
      assert.equal(health.status, 200, 'the running server is unharmed');
    } finally {
      await server.stop();
    }
    const migrate = await run(['migrate', '--data-dir', dir, '--json']);
    assert.equal(migrate.code, 0);
    assert.deepEqual(JSON.parse(migrate.stdout), { applied: [] });
  });
});
