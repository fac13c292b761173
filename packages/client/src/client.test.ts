import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { TOKEN_ERROR_CODES } from '@tessera/protocol';
import axios from 'axios';
import { signUp, startTestServer, type TestServer } from '../../../test/support/test_server.js';
import { withAuth } from './axios.js';
import { type AuthClient, createAuthClient, type LogoutReason, RETRYABLE_TOKEN_CODES } from './index.js';

/** A proxy in front of the auth server that counts requests by path and can drop a response. */
async function startCountingProxy(target: string) {
  const state = { counts: new Map<string, number>(), dropNextRefresh: false };
  const server: Server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    state.counts.set(path, (state.counts.get(path) ?? 0) + 1);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const headers = Object.fromEntries(Object.entries(req.headers).filter(([k]) => !['host', 'connection', 'content-length'].includes(k))) as Record<string, string>;
    const upstream = await fetch(target + req.url, { method: req.method, headers, body: chunks.length ? Buffer.concat(chunks) : undefined });
    const body = Buffer.from(await upstream.arrayBuffer());
    if (path === '/auth/refresh' && state.dropNextRefresh) {
      // The server did the refresh; the client never hears of it (a lost response).
      state.dropNextRefresh = false;
      res.destroy();
      return;
    }
    const out: Record<string, string> = {};
    upstream.headers.forEach((value, key) => {
      if (!['content-encoding', 'transfer-encoding', 'connection', 'content-length'].includes(key)) out[key] = value;
    });
    res.writeHead(upstream.status, out).end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    state,
    url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
    refreshes: () => state.counts.get('/auth/refresh') ?? 0,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

describe('@tessera/client against the real auth server', () => {
  let t: TestServer;
  let proxy: Awaited<ReturnType<typeof startCountingProxy>>;
  const clients: AuthClient[] = [];

  before(async () => {
    t = await startTestServer({ accessTtl: '15m', reuseGrace: '10s' });
    proxy = await startCountingProxy(t.url);
  });
  after(async () => {
    for (const c of clients) c.close();
    await proxy.close();
    await t.close();
  });

  async function signedInClient() {
    const { username, password } = await signUp(t);
    const client = createAuthClient({ baseUrl: proxy.url, autoRefresh: false });
    clients.push(client);
    const logouts: LogoutReason[] = [];
    client.on('logout', ({ reason }) => logouts.push(reason));
    const session = await client.login(username, password);
    return { client, session, username, password, logouts };
  }

  test('the client handles exactly the protocol’s retryable token codes', () => {
    assert.deepEqual([...RETRYABLE_TOKEN_CODES], TOKEN_ERROR_CODES.filter((c) => c !== 'token_reused'));
  });

  test('login gives a session from the token, and fetch attaches the access token', async () => {
    const { client, session, username } = await signedInClient();
    assert.equal(session.username, username);
    assert.ok(session.accessExpiresAt > Date.now() + 14 * 60 * 1000);
    const res = await client.fetch(`${proxy.url}/auth/me`);
    assert.equal(res.status, 200);
    assert.equal((await res.json()).username, username);
  });

  test('25 concurrent requests after expiry make exactly one refresh, and all succeed', async () => {
    const { client } = await signedInClient();
    t.clock.advance(15 * 60 + 10);
    const before = proxy.refreshes();
    const responses = await Promise.all(Array.from({ length: 25 }, () => client.fetch(`${proxy.url}/auth/me`)));
    assert.deepEqual([...new Set(responses.map((r) => r.status))], [200]);
    assert.equal(proxy.refreshes() - before, 1);
  });

  test('a dead session surfaces once, with its reason, and makes no further refresh calls', async () => {
    const { client, username, password, logouts } = await signedInClient();
    const other = createAuthClient({ baseUrl: t.url, autoRefresh: false });
    await other.login(username, password);
    await other.fetch(`${t.url}/auth/logout-all`, { method: 'POST' });
    other.close();
    const before = proxy.refreshes();
    const responses = await Promise.all(Array.from({ length: 5 }, () => client.fetch(`${proxy.url}/auth/me`)));
    assert.deepEqual(responses.map((r) => r.status), [401, 401, 401, 401, 401]);
    assert.deepEqual(logouts, ['token_revoked'], 'one logout event, with the reason');
    assert.equal(proxy.refreshes() - before, 1);
    await client.fetch(`${proxy.url}/auth/me`);
    assert.equal(proxy.refreshes() - before, 1, 'no refresh once the session is known to be over');
    assert.equal(await client.getSession(), null);
  });

  test('a second 401 after a fresh token is returned to the caller, not refreshed again', async () => {
    const { client } = await signedInClient();
    // A resource server that refuses every token (say, configured for another audience).
    let seen = 0;
    const refuser = createServer((_req, res) => {
      seen += 1;
      res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"', 'content-type': 'application/json' });
      res.end('{"error":"invalid_token","message":"no"}');
    });
    await new Promise<void>((resolve) => refuser.listen(0, '127.0.0.1', resolve));
    try {
      const address = refuser.address();
      const url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/`;
      const before = proxy.refreshes();
      const res = await client.fetch(url);
      assert.equal(res.status, 401);
      assert.equal(seen, 2, 'sent, then retried exactly once');
      assert.equal(proxy.refreshes() - before, 1, 'one refresh, no loop');
    } finally {
      await new Promise<void>((resolve) => refuser.close(() => resolve()));
    }
  });

  test('403, 404 and 5xx pass through untouched, with no refresh', async () => {
    const { client } = await signedInClient();
    const before = proxy.refreshes();
    const notFound = await client.fetch(`${proxy.url}/auth/sessions/00000000-0000-4000-8000-000000000000`, { method: 'DELETE' });
    assert.equal(notFound.status, 404);
    assert.equal((await notFound.json()).error, 'not_found');
    const wrongPassword = await client.fetch(`${proxy.url}/auth/password`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ current_password: 'not it at all', new_password: 'whatever new pw' }),
    });
    assert.equal(wrongPassword.status, 401, 'a wrong password is not a token failure');
    assert.equal(proxy.refreshes() - before, 0);
  });

  test('a dropped refresh response does not log out, and the grace window recovers it', async () => {
    const { client, logouts } = await signedInClient();
    t.clock.advance(15 * 60 + 10);
    proxy.state.dropNextRefresh = true;
    const lost = await client.fetch(`${proxy.url}/auth/me`);
    assert.equal(lost.status, 401, 'the caller sees the original 401');
    assert.deepEqual(logouts, [], 'a network error is not a logout');
    t.clock.advance(3);
    const recovered = await client.fetch(`${proxy.url}/auth/me`);
    assert.equal(recovered.status, 200, 'the same refresh token, within grace, gets the same successor');
    assert.deepEqual(logouts, []);
  });

  test('logout ends the session on the server and emits logout', async () => {
    const { client, logouts } = await signedInClient();
    const token = client.getAccessToken()!;
    await client.logout();
    assert.deepEqual(logouts, ['logout']);
    assert.equal((await t.call('GET', '/auth/me', { token })).body.error, 'token_revoked');
    assert.equal(client.getAccessToken(), null);
  });

  test('register signs in at once; bad credentials reject with the server’s code', async () => {
    const client = createAuthClient({ baseUrl: t.url, autoRefresh: false });
    clients.push(client);
    const name = `reg${Date.now()}`;
    const session = await client.register(name, 'long enough password');
    assert.equal(session.username, name);
    await assert.rejects(client.login(name, 'wrong password!!'), (e: { code: string; status: number }) => e.code === 'invalid_credentials' && e.status === 401);
    await assert.rejects(client.register(name, 'long enough password'), (e: { code: string }) => e.code === 'username_taken');
  });

  test('axios: 25 concurrent requests after expiry, one refresh, all succeed; a dead session rejects', async () => {
    const { client } = await signedInClient();
    const api = axios.create({ baseURL: proxy.url });
    withAuth(api, client);
    t.clock.advance(15 * 60 + 10);
    const before = proxy.refreshes();
    const results = await Promise.all(Array.from({ length: 25 }, () => api.get('/auth/me')));
    assert.ok(results.every((r) => r.status === 200));
    assert.equal(proxy.refreshes() - before, 1);
    await api.post('/auth/logout-all');
    await assert.rejects(api.get('/auth/me'), (e: { response?: { status: number } }) => e.response?.status === 401);
    const afterLogout = proxy.refreshes();
    await assert.rejects(api.get('/auth/me'));
    assert.equal(proxy.refreshes(), afterLogout, 'no refresh loop');
  });

  test('proactive refresh shortly before expiry', async () => {
    const { username, password } = await signUp(t);
    const short = await startTestServer({ accessTtl: '2s', clock: Date.now });
    try {
      const reg = await short.call('POST', '/auth/register', { body: { username, password } });
      assert.equal(reg.status, 201);
      const client = createAuthClient({ baseUrl: short.url, refreshMargin: 1 });
      clients.push(client);
      const refreshed = new Promise((resolve) => client.on('refreshed', resolve));
      await client.login(username, password);
      await refreshed;
      assert.equal((await client.fetch(`${short.url}/auth/me`)).status, 200);
    } finally {
      await short.close();
    }
  });
});
