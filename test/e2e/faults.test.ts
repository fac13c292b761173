import assert from 'node:assert/strict';
import { request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { createDatabase, type PostgresServer, startPostgres } from '../support/postgres_server.js';
import { serveProcess } from '../support/serve_process.js';
import { signUp, startTestServer } from '../support/test_server.js';

/** A real `tessera serve` process on PostgreSQL, with a fixed issuer. */
const startOnPostgres = (databaseUrl: string) => serveProcess(['--database-url', databaseUrl, '--issuer', 'http://localhost:4000']);

const post = async (url: string, body: unknown, token?: string) => {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...(token ? { authorization: `Bearer ${token}` } : {}) },
    body: JSON.stringify(body),
  });
  return { status: res.status, body: res.status === 204 ? undefined : await res.json().catch(() => undefined), headers: res.headers };
};

/** A login on a connection of its own; `sent` resolves once the whole request is on the wire. */
function loginOnFreshConnection(url: string, username: string): { sent: Promise<void>; status: Promise<number> } {
  let sent!: () => void;
  const sentPromise = new Promise<void>((resolve) => {
    sent = resolve;
  });
  const status = new Promise<number>((resolve, reject) => {
    const body = JSON.stringify({ username, password: 'long enough pw' });
    const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('finish', sent);
    req.on('error', reject);
    req.end(body);
  });
  return { sent: sentPromise, status };
}

describe('faults, each handled on purpose', () => {
  let postgres: PostgresServer;
  let databaseUrl: string;
  before(async () => {
    postgres = await startPostgres();
    databaseUrl = await createDatabase(postgres.url, 'faults');
  });
  after(() => postgres?.stop());

  test('database down during a refresh: 503 unavailable, nothing half-written; after recovery the old token still works', async () => {
    const t = await startTestServer({ databaseUrl, issuer: 'http://localhost:4000' });
    try {
      const { pair } = await signUp(t);
      await postgres.pause();
      const during = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
      assert.equal(during.status, 503);
      assert.equal(during.body.error, 'unavailable');
      assert.ok(Number(during.headers.get('retry-after')) > 0);
      assert.equal((await t.call('GET', '/readyz')).status, 503);
      assert.equal((await t.call('GET', '/healthz')).status, 200);
      await postgres.resume();
      let after = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
      for (let i = 0; i < 20 && after.status === 503; i++) {
        await new Promise((resolve) => setTimeout(resolve, 250));
        after = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
      }
      assert.equal(after.status, 200, `the refresh that failed left the token as it was: ${JSON.stringify(after.body)}`);
      assert.equal((await t.call('GET', '/readyz')).status, 200);
    } finally {
      await t.close();
    }
  });

  test('kill -9 under load loses no committed session', async () => {
    const first = await startOnPostgres(databaseUrl);
    const username = `kill${Date.now()}`;
    assert.equal((await post(`${first.url}/auth/register`, { username, password: 'long enough pw' })).status, 201);
    const committed: string[] = [];
    let stop = false;
    const load = Array.from({ length: 6 }, async () => {
      while (!stop) {
        const res = await post(`${first.url}/auth/login`, { username, password: 'long enough pw' }).catch(() => undefined);
        if (res?.status === 200) committed.push(res.body.session_id);
        if (!res) return;
      }
    });
    await new Promise((resolve) => setTimeout(resolve, 800));
    first.child.kill('SIGKILL');
    stop = true;
    await Promise.all(load);
    assert.ok(committed.length > 0, 'some logins completed before the kill');
    const client = new pg.Client({ connectionString: databaseUrl });
    await client.connect();
    try {
      const { rows } = await client.query('SELECT id FROM sessions WHERE id = ANY($1::uuid[])', [committed]);
      assert.equal(rows.length, committed.length, 'every session that was answered 200 is in the database');
    } finally {
      await client.end();
    }
    const second = await startOnPostgres(databaseUrl);
    try {
      assert.equal((await post(`${second.url}/auth/login`, { username, password: 'long enough pw' })).status, 200);
    } finally {
      second.child.kill('SIGTERM');
    }
  });

  test('SIGTERM drains in-flight requests before exiting', async () => {
    const server = await startOnPostgres(databaseUrl);
    const username = `drain${Date.now()}`;
    await post(`${server.url}/auth/register`, { username, password: 'long enough pw' });
    // Each on a connection of its own (no keep-alive pool), so every one is in flight at the server.
    const inflight = Array.from({ length: 8 }, () => loginOnFreshConnection(`${server.url}/auth/login`, username));
    await Promise.all(inflight.map((r) => r.sent));
    await new Promise((resolve) => setTimeout(resolve, 20)); // let the server read them
    const exited = new Promise<number | null>((resolve) => server.child.once('exit', resolve));
    server.child.kill('SIGTERM');
    const results = await Promise.all(inflight.map((r) => r.status));
    assert.deepEqual(results, Array(8).fill(200));
    assert.equal(await exited, 0);
  });
});
