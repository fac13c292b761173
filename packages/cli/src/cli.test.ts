import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { QUIET_ENV, serveProcess, TESSERA_BIN } from '../../../test/support/serve_process.js';

const BIN = TESSERA_BIN;
const dirs: string[] = [];
after(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'tessera-cli-'));
  dirs.push(dir);
  return dir;
}

const QUIET = QUIET_ENV;

/** Runs the CLI to completion, with `stdin` as its standard input. */
function run(args: string[], env: Record<string, string> = {}, stdin = ''): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, ...QUIET, ...env } });
    child.stdin.end(stdin);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const serve = serveProcess;

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
    for (const args of [['serve', '--alg', 'HS256'], ['serve', '--port', 'abc'], ['serve', '--access-ttl', 'soon'], ['serve', '--no-such-flag'], ['serve', '--rate-limit', 'ip=0/1m'], ['serve', '--retention', '1h']]) {
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

  test('keys retire takes a KID that starts with "-" (one base64url thumbprint in 64 does) as the KID, not a flag', async () => {
    const kid = `-${'A'.repeat(42)}`;
    for (const args of [['keys', 'retire', kid, '--data-dir', 'memory://'], ['keys', 'retire', '--data-dir', 'memory://', kid]]) {
      const retired = await run(args);
      assert.equal(retired.code, 1, retired.stderr);
      assert.match(retired.stderr, new RegExp(`No live key "${kid}"`));
    }
  });

  test('a data directory others can enter is refused (exit 1, the chmod that fixes it), by serve and by the commands; nothing changes', async () => {
    const dir = tempDir();
    const first = await serve(['--data-dir', dir]);
    await first.stop();
    assert.equal(statSync(dir).mode & 0o777, 0o700, 'a new data dir is 0700');
    assert.equal(statSync(join(dir, 'db')).mode & 0o777, 0o700);
    for (const [path, mode] of [[dir, 0o755], [join(dir, 'db', 'pg_wal'), 0o750]] as const) {
      chmodSync(path, mode);
      const refused = await run(['serve', '--port', '0', '--data-dir', dir]);
      assert.equal(refused.code, 1, refused.stderr);
      assert.match(refused.stderr, /can be reached by other users/);
      assert.ok(refused.stderr.includes(`chmod -R go-rwx ${dir}`), refused.stderr);
      const list = await run(['user', 'list', '--data-dir', dir]);
      assert.equal(list.code, 1);
      assert.match(list.stderr, /chmod -R go-rwx/);
      assert.equal(statSync(path).mode & 0o777, mode, 'left as it was');
      chmodSync(path, 0o700);
    }
    const fixed = await run(['user', 'list', '--data-dir', dir]);
    assert.equal(fixed.code, 0, fixed.stderr);
    // A directory inside, linked to one that others can enter, is checked where it really is.
    const elsewhere = tempDir();
    chmodSync(elsewhere, 0o755);
    symlinkSync(elsewhere, join(dir, 'db', 'linked'));
    const linked = await run(['user', 'list', '--data-dir', dir]);
    assert.equal(linked.code, 1);
    assert.match(linked.stderr, /linked is 0755/);
    rmSync(join(dir, 'db', 'linked'));
  });

  test('a data directory in use is refused clearly by a second serve, migrate answers through the running server, and nothing changes', async () => {
    const dir = tempDir();
    const server = await serve(['--data-dir', dir]);
    try {
      const second = await run(['serve', '--port', '0', '--data-dir', dir]);
      assert.equal(second.code, 1);
      assert.match(second.stderr, /in use by process \d+/);
      // migrate asks the running server, which migrated at start, and changes nothing.
      const migrate = await run(['migrate', '--data-dir', dir]);
      assert.equal(migrate.code, 0, migrate.stderr);
      assert.match(migrate.stdout, /up to date \(the running tessera serve migrated it at start\)/);
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

describe('operator commands', () => {
  const dir = tempDir();
  const D = ['--data-dir', dir];

  test('user add reads the password from stdin only; list, disable, enable, remove; exit codes', async () => {
    const add = await run(['user', 'add', '--username', 'op-admin', '--password-stdin', '--role', 'admin', '--role', 'ops', ...D], {}, 'operator password\n');
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /created user op-admin .* with roles admin, ops/);
    const asArgument = await run(['user', 'add', '--username', 'x1', 'secret-password', ...D]);
    assert.equal(asArgument.code, 2);
    assert.match(asArgument.stderr, /password/);
    assert.equal((await run(['user', 'add', '--username', 'x1', ...D])).code, 2, 'without --password-stdin');
    const weak = await run(['user', 'add', '--username', 'xx2', '--password-stdin', ...D], {}, 'short');
    assert.equal(weak.code, 1);
    assert.match(weak.stderr, /weak_password/);
    const dup = await run(['user', 'add', '--username', 'OP-ADMIN', '--password-stdin', ...D], {}, 'operator password');
    assert.equal(dup.code, 1);
    assert.match(dup.stderr, /username_taken/);

    const list = await run(['user', 'list', '--json', ...D]);
    const users = JSON.parse(list.stdout);
    assert.deepEqual(users.map((u: { username: string; roles: string[] }) => [u.username, u.roles]), [['op-admin', ['admin', 'ops']]]);
    assert.equal((await run(['user', 'disable', '--username', 'op-admin', ...D])).code, 0);
    assert.equal(JSON.parse((await run(['user', 'list', '--json', ...D])).stdout)[0].disabled, true);
    assert.equal((await run(['user', 'enable', '--username', 'op-admin', ...D])).code, 0);
    const missing = await run(['user', 'disable', '--username', 'nobody', ...D]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No user "nobody"/);
    assert.equal((await run(['user', 'frobnicate', ...D])).code, 2);
  });

  test('while serve runs: the CLI acts through the admin socket (0600), and a disabled user is cut off at once', async () => {
    const server = await serve(D);
    try {
      assert.equal(statSync(join(dir, 'admin.sock')).mode & 0o777, 0o600);
      const add = await run(['user', 'add', '--username', 'live-user', '--password-stdin', ...D], {}, 'live password 1');
      assert.equal(add.code, 0, add.stderr);
      const login = await post(`${server.url}/auth/login`, { username: 'live-user', password: 'live password 1' });
      assert.equal(login.status, 200);
      const admin = await post(`${server.url}/auth/login`, { username: 'op-admin', password: 'operator password' });
      assert.deepEqual(decodeJwt(admin.body.access_token).roles, ['admin', 'ops'], 'roles from user add are in the access token');

      const disable = await run(['user', 'disable', '--username', 'live-user', ...D]);
      assert.equal(disable.code, 0, disable.stderr);
      assert.match(disable.stdout, /ended 1 session/);
      const refresh = await post(`${server.url}/auth/refresh`, {}, login.body.refresh_token);
      assert.equal(refresh.body.error, 'token_revoked');
      assert.equal((await post(`${server.url}/auth/login`, { username: 'live-user', password: 'live password 1' })).body.error, 'account_disabled');

      const rotate = await run(['keys', 'rotate', '--json', ...D]);
      assert.equal(rotate.code, 0, rotate.stderr);
      const newKid = JSON.parse(rotate.stdout).kid;
      const jwks = await (await fetch(`${server.url}/.well-known/jwks.json`)).json();
      assert.ok(jwks.keys.some((k: { kid: string }) => k.kid === newKid), 'the running server publishes the rotated key at once');
      const keys = JSON.parse((await run(['keys', 'list', '--json', ...D])).stdout);
      assert.deepEqual(keys.map((k: { state: string }) => k.state).sort(), ['pending', 'signing']);

      const verify = await run(['token', 'verify', admin.body.access_token, ...D]);
      assert.equal(verify.code, 0, verify.stderr);
      assert.equal(JSON.parse(verify.stdout).valid, true);
      const revoked = await run(['token', 'verify', login.body.access_token, ...D]);
      assert.equal(revoked.code, 1);
      assert.equal(JSON.parse(revoked.stdout).error, 'token_revoked');

      const audit = JSON.parse((await run(['audit', '--username', 'live-user', '--json', ...D])).stdout);
      assert.deepEqual(audit.map((e: { event: string }) => e.event).slice(0, 4), ['login.failed', 'session.revoked', 'user.disabled', 'login.succeeded']);
      const text = JSON.stringify(audit);
      assert.ok(!text.includes('live password 1') && !text.includes(login.body.refresh_token));
      const filtered = JSON.parse((await run(['audit', '--event', 'key.rotated', '--limit', '1', '--json', ...D])).stdout);
      assert.equal(filtered.length, 1);
      assert.equal((await run(['audit', '--since', 'yesterday', ...D])).code, 2);
    } finally {
      await server.stop();
    }
  });

  test('user roles, set-password and reset-link: directly on the data dir, then through a running server', async () => {
    const add = await run(['user', 'add', '--username', 'acct-user', '--password-stdin', '--role', 'reader', ...D], {}, 'first password 1');
    assert.equal(add.code, 0, add.stderr);
    const roles = await run(['user', 'roles', '--username', 'acct-user', '--role', 'editor', '--role', 'reader', ...D]);
    assert.equal(roles.code, 0, roles.stderr);
    assert.match(roles.stdout, /acct-user now has roles editor, reader/);
    assert.equal((await run(['user', 'roles', '--username', 'acct-user', '--role', 'not a role', ...D])).code, 1);
    assert.equal((await run(['user', 'roles', '--username', 'nobody', ...D])).code, 1);
    const offline = await run(['user', 'reset-link', '--username', 'acct-user', '--public-url', 'https://accounts.example.test', ...D]);
    assert.equal(offline.code, 0, offline.stderr);
    assert.match(offline.stdout, /^https:\/\/accounts\.example\.test\/#reset-password=[A-Za-z0-9_-]{43}\n/);
    assert.equal((await run(['user', 'set-password', '--username', 'acct-user', 'an-argument', ...D])).code, 2, 'never a password argument');

    const server = await serve(D);
    try {
      const login = await post(`${server.url}/auth/login`, { username: 'acct-user', password: 'first password 1' });
      assert.deepEqual(decodeJwt(login.body.access_token).roles, ['editor', 'reader']);
      const cleared = await run(['user', 'roles', '--username', 'acct-user', '--json', ...D]);
      assert.deepEqual(JSON.parse(cleared.stdout).roles, []);
      const refreshed = await post(`${server.url}/auth/refresh`, {}, login.body.refresh_token);
      assert.deepEqual(decodeJwt(refreshed.body.access_token).roles, [], 'the next refresh carries the new roles');

      // The link made offline points where it was told; one made through the server points at the server.
      const token = offline.stdout.split('\n')[0]!.split('=')[1]!;
      const online = await run(['user', 'reset-link', '--username', 'acct-user', '--json', ...D]);
      assert.equal(online.code, 0, online.stderr);
      const link = JSON.parse(online.stdout);
      assert.match(link.reset_url, new RegExp(`^http://localhost:${new URL(server.url).port}/#reset-password=`), 'under the issuer when --public-url is not set');
      assert.equal(link.mailed, false);
      assert.equal((await post(`${server.url}/auth/password/reset`, { token, new_password: 'second password 2' })).status, 204);
      assert.equal((await post(`${server.url}/auth/password/reset`, { token: link.reset_url.split('=')[1], new_password: 'third password 3' })).body.error, 'invalid_reset_token', 'a reset voids the other links');

      const relogin = await post(`${server.url}/auth/login`, { username: 'acct-user', password: 'second password 2' });
      assert.equal(relogin.status, 200);
      const set = await run(['user', 'set-password', '--username', 'acct-user', '--password-stdin', ...D], {}, 'fourth password 4\n');
      assert.equal(set.code, 0, set.stderr);
      assert.match(set.stdout, /ended 1 session/);
      assert.equal((await post(`${server.url}/auth/refresh`, {}, relogin.body.refresh_token)).body.error, 'token_revoked');
      assert.equal((await post(`${server.url}/auth/login`, { username: 'acct-user', password: 'fourth password 4' })).status, 200);
      const weak = await run(['user', 'set-password', '--username', 'acct-user', '--password-stdin', ...D], {}, 'short');
      assert.equal(weak.code, 1);
      assert.match(weak.stderr, /weak_password/);

      const audit = await run(['audit', '--username', 'acct-user', '--json', ...D]);
      const events = JSON.parse(audit.stdout).map((e: { event: string }) => e.event);
      for (const event of ['user.roles_changed', 'password.reset_requested', 'password.reset', 'password.changed']) assert.ok(events.includes(event), `${event} in ${events}`);
      for (const secret of [token, 'second password 2', 'fourth password 4']) assert.ok(!audit.stdout.includes(secret));
    } finally {
      await server.stop();
    }
    assert.equal((await run(['user', 'remove', '--username', 'acct-user', ...D])).code, 0, 'the next test lists this dir’s users');
  });

  test('token decode needs no database; remove ends the user for good', async () => {
    const decoded = await run(['token', 'decode', 'eyJhbGciOiJSUzI1NiIsInR5cCI6ImF0K2p3dCJ9.eyJzdWIiOiJ4In0.c2ln']);
    assert.equal(decoded.code, 0);
    assert.deepEqual(JSON.parse(decoded.stdout), { header: { alg: 'RS256', typ: 'at+jwt' }, claims: { sub: 'x' } });
    assert.equal((await run(['token', 'decode', 'nope'])).code, 1);
    const removed = await run(['user', 'remove', '--username', 'live-user', ...D]);
    assert.equal(removed.code, 0, removed.stderr);
    const users = JSON.parse((await run(['user', 'list', '--json', ...D])).stdout);
    assert.deepEqual(users.map((u: { username: string }) => u.username), ['op-admin']);
  });
});

describe('memory:// and terminals', () => {
  test('--data-dir memory:// keeps nothing on disk for every command (no directory named memory: appears)', async () => {
    const cwd = tempDir();
    const inDir = (args: string[], stdin = '') =>
      new Promise<{ code: number | null; stderr: string }>((resolve) => {
        const child = spawn(process.execPath, [BIN, ...args, '--data-dir', 'memory://'], { cwd, env: { ...process.env, ...QUIET } });
        child.stdin.end(stdin);
        let stderr = '';
        child.stderr.on('data', (d) => (stderr += d));
        child.on('close', (code) => resolve({ code, stderr }));
      });
    for (const [args, stdin] of [
      [['user', 'list'], ''],
      [['user', 'add', '--username', 'mem-user', '--password-stdin'], 'a long enough password'],
      [['keys', 'list'], ''],
      [['audit'], ''],
      [['migrate'], ''],
    ] as const) {
      const result = await inDir([...args], stdin);
      assert.equal(result.code, 0, `${args.join(' ')}: ${result.stderr}`);
    }
    const { readdirSync } = await import('node:fs');
    assert.deepEqual(readdirSync(cwd), [], 'nothing was written in the working directory');
  });

  test('on a terminal the log is for people (pino-pretty); piped, it stays JSON', async () => {
    const line = `${process.execPath} ${BIN} serve --port 0 --data-dir memory://`;
    const onTerminal = await new Promise<string>((resolve) => {
      // util-linux's script gives the server a pseudo-terminal for its stdout.
      const child = spawn('script', ['-qec', line, '/dev/null'], { env: { ...process.env, TESSERA_LOG_LEVEL: 'info' } });
      let out = '';
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('listening on')) child.kill('SIGTERM');
      });
      child.on('close', () => resolve(out));
    });
    assert.match(onTerminal, /INFO.*key\.rotated/);
    assert.doesNotMatch(onTerminal, /\{"level":30/);
    const piped = await serve(['--data-dir', 'memory://'], { TESSERA_LOG_LEVEL: 'info' });
    await piped.stop();
    assert.match(piped.output(), /^\{"level":30,/m);
  });
});
