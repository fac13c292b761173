import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { test } from 'node:test';
import { QUIET_ENV, serveProcess } from '../support/serve_process.js';

const root = new URL('../../', import.meta.url).pathname;

function portInUse(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

async function waitFor(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if ((await fetch(url)).ok) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`${url} did not answer within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

test('npm start: the example API follows the feed with the secret start made, strangers get 401, and a logout is refused at once', async () => {
  for (const port of [4000, 4001]) assert.equal(await portInUse(port), false, `port ${port} is taken: stop what runs there to run this test`);
  const { TESSERA_FEED_SECRET: _mine, ...env } = process.env;
  const start = spawn(process.execPath, ['scripts/start.mjs', '--data-dir', 'memory://'], { cwd: root, env: { ...env, ...QUIET_ENV }, stdio: 'ignore' });
  try {
    await Promise.all([waitFor('http://127.0.0.1:4000/healthz', 30_000), waitFor('http://127.0.0.1:4001/readyz', 30_000)]);
    const feed = await fetch('http://127.0.0.1:4000/auth/revocations');
    assert.equal(feed.status, 401);
    const json = { 'content-type': 'application/json' };
    const user = { username: `npmstart${process.pid}`, password: 'correct horse battery' };
    assert.equal((await fetch('http://127.0.0.1:4000/auth/register', { method: 'POST', headers: json, body: JSON.stringify(user) })).status, 201);
    const pair = (await (await fetch('http://127.0.0.1:4000/auth/login', { method: 'POST', headers: json, body: JSON.stringify(user) })).json()) as { access_token: string };
    const bearer = { authorization: `Bearer ${pair.access_token}` };
    assert.equal((await fetch('http://127.0.0.1:4001/api/profile', { headers: bearer })).status, 200);
    assert.equal((await fetch('http://127.0.0.1:4000/auth/logout', { method: 'POST', headers: bearer })).status, 204);
    const loggedOut = Date.now();
    let body: { error?: string } = {};
    while (Date.now() - loggedOut < 2000 && body.error !== 'token_revoked') {
      body = (await (await fetch('http://127.0.0.1:4001/api/profile', { headers: bearer })).json()) as { error?: string };
    }
    assert.equal(body.error, 'token_revoked');
    assert.ok(Date.now() - loggedOut < 1000, `refused after ${Date.now() - loggedOut} ms`);
  } finally {
    const exited = new Promise((resolve) => start.once('exit', resolve));
    start.kill('SIGTERM');
    await exited;
  }
});

test('tessera serve warns when it listens beyond loopback without a feed secret, and not with one', async () => {
  const logged = async (env: Record<string, string>) => {
    const server = await serveProcess(['--host', '0.0.0.0', '--data-dir', 'memory://'], { TESSERA_LOG_LEVEL: 'warn', ...env });
    await server.stop();
    return server.output();
  };
  assert.match(await logged({}), /revocation feed is open to anyone/);
  assert.doesNotMatch(await logged({ TESSERA_FEED_SECRET: 'a-long-enough-feed-secret' }), /revocation feed is open/);
});
