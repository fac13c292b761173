import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { freePort } from '../support/postgres_server.js';
import { QUIET_ENV } from '../support/serve_process.js';

const root = new URL('../../', import.meta.url).pathname;
const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** The first ```sh block after a heading, exactly as a reader copies it. */
function shBlockAfter(heading: string): string {
  const at = readme.indexOf(`\n${heading}\n`);
  assert.ok(at >= 0, `README has no "${heading}"`);
  const match = /```sh\n([\s\S]*?)```/.exec(readme.slice(at));
  assert.ok(match?.[1], `no sh block after "${heading}"`);
  return match[1];
}

/**
 * Runs a script with bash. It is done when bash exits (a grandchild that keeps the
 * pipes open cannot hold the test), and a hung command fails the test with what it
 * printed instead of blocking it.
 */
function bash(script: string, cwd: string, env: Record<string, string>): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', ['-c', script], { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {}
    };
    const timer = setTimeout(() => {
      killGroup();
      reject(new Error(`timed out after 60 s: ${script.slice(0, 200)}\nstdout: ${stdout.slice(-500)}\nstderr: ${stderr.slice(-500)}`));
    }, 60_000);
    child.once('exit', (status) => {
      clearTimeout(timer);
      // Let the pipes drain, then leave nothing of the group behind.
      setTimeout(() => {
        killGroup();
        resolve({ status, stdout, stderr });
      }, 200);
    });
  });
}

async function waitFor(url: string): Promise<void> {
  const deadline = Date.now() + 60_000;
  while (!(await fetch(url, { signal: AbortSignal.timeout(2000) }).then((r) => r.ok, () => false))) {
    if (Date.now() > deadline) throw new Error(`${url} did not come up`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

// The README's own command blocks, run as a reader would: `npx tessera serve`, the
// 5-minute tour's curl commands, then every operator command, on a new data dir.
// Only the ports (4000/4001 may be taken) and the reuse grace (10 s → 1 s) differ.
test('every command of the README tour and of "Operating" works as written', { skip: spawnSync('curl', ['--version']).status !== 0 && 'curl is missing' }, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-readme-'));
  const [authPort, apiPort] = [await freePort(), await freePort()];
  const env = {
    ...QUIET_ENV,
    TESSERA_DATA_DIR: join(dir, '.tessera'),
    PORT: String(authPort),
    TESSERA_REUSE_GRACE: '1s',
    TESSERA_FEED_SECRET: 'readme-feed-secret-0123456789',
  };
  // Its own process group: npx leaves `tessera serve` running when npx alone is signalled.
  const serve = spawn('npx', ['tessera', 'serve'], { cwd: root, env: { ...process.env, ...env }, stdio: 'ignore', detached: true });
  const api = spawn(process.execPath, ['examples/business-api/dist/server.js'], {
    cwd: root,
    env: { ...process.env, ...env, PORT: String(apiPort), TESSERA_ISSUER: `http://localhost:${authPort}` },
    stdio: 'ignore',
  });
  try {
    t.diagnostic(`auth server on ${authPort}, business API on ${apiPort}`);
    await waitFor(`http://127.0.0.1:${authPort}/healthz`);
    await waitFor(`http://127.0.0.1:${apiPort}/readyz`);

    const tour = shBlockAfter('## A 5-minute tour')
      .replaceAll('localhost:4000', `localhost:${authPort}`)
      .replaceAll('localhost:4001', `localhost:${apiPort}`)
      .replace('sleep 11;', 'sleep 1.5;');
    t.diagnostic('running the tour');
    const toured = await bash(`set -eo pipefail\n${tour}`, dir, env);
    assert.equal(toured.status, 0, toured.stderr);
    const out = toured.stdout;
    const expect = (pattern: RegExp, what: string) => assert.ok(pattern.test(out), `${what}: ${pattern} not in the tour's output`);
    assert.match(out, /\{"user":\{"id":"[^"]+","username":"alice"/m, 'register');
    expect(/"access_token":"eyJ[^"]+","token_type":"Bearer".*?"refresh_token":"eyJ/, 'login');
    expect(/\{"id":"[^"]+","username":"alice","roles":\[\]/, '/auth/me');
    expect(/\{"error":"token_reused","message":"This refresh token was already used; the session has been ended for safety\."\}/, 'reuse');
    expect(/"error":"token_revoked"/, 'the business API refuses the revoked session');
    expect(/"message":"Hello, alice\."/, 'the business API serves a live session');
    expect(/\{"keys":\[\{/, 'JWKS');
    expect(/"openapi":"3\.1/, 'OpenAPI');

    // The placeholders a reader fills in: a key id and a token.
    const jwks = (await (await fetch(`http://127.0.0.1:${authPort}/.well-known/jwks.json`, { signal: AbortSignal.timeout(10_000) })).json()) as { keys: { kid: string }[] };
    const pair = JSON.parse(readFileSync(join(dir, 'pair.json'), 'utf8')) as { access_token: string };
    const lines = shBlockAfter('## Operating').split('\n').filter((line) => line.trim() !== '');
    assert.ok(lines.length >= 12);
    let retiredKid: string | undefined;
    for (const line of lines) {
      // alice exists since the tour: the operator adds another user of the same shape.
      let command = line.replaceAll('alice', 'carol').replace('[--alg EdDSA]', '--alg EdDSA').replace(/\bJWT\b/, pair.access_token);
      if (command.includes(' KID')) {
        // Retire the key the rotation just published (an emergency on a key that never signed).
        const keys = (await (await fetch(`http://127.0.0.1:${authPort}/.well-known/jwks.json`, { signal: AbortSignal.timeout(10_000) })).json()) as { keys: { kid: string }[] };
        retiredKid = keys.keys.map((k) => k.kid).find((kid) => !jwks.keys.some((k) => k.kid === kid));
        assert.ok(retiredKid, 'keys rotate published a new key');
        command = command.replace(' KID', ` ${retiredKid}`);
      }
      t.diagnostic(`running: ${line}`);
      const ran = await bash(command, root, { ...env, PASSWORD: 'correct horse battery staple' });
      assert.equal(ran.status, 0, `${line}\n${ran.stdout}${ran.stderr}`);
      if (line.includes('user list')) assert.match(ran.stdout, /carol/);
      if (line.includes('token verify')) assert.match(ran.stdout, /alice|valid/i);
      
    }
    t.diagnostic("every command ran");
    const after = (await (await fetch(`http://127.0.0.1:${authPort}/.well-known/jwks.json`, { signal: AbortSignal.timeout(10_000) })).json()) as { keys: { kid: string }[] };
    assert.ok(!after.keys.some((k) => k.kid === retiredKid), 'the retired key left the JWKS at once');
  } finally {
    await stop(api);
    if (serve.exitCode === null && serve.signalCode === null && serve.pid) {
      const exited = new Promise((resolve) => serve.once('exit', resolve));
      process.kill(-serve.pid, 'SIGTERM');
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  }
});
