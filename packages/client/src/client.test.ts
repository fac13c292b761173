import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { TOKEN_ERROR_CODES } from '@tessera/protocol';
import axios from 'axios';
import { signUp, startTestServer, type TestServer } from '../../../test/support/test_server.js';
import { withAuth } from './axios.js';
import { type AuthClient, type AuthClientOptions, createAuthClient, type LogoutReason, RETRYABLE_TOKEN_CODES } from './index.js';

/** A real HTTP server on a free port that records each request's path and Authorization header. */
async function startRecordingServer(handler: (req: IncomingMessage, res: ServerResponse) => void) {
  const seen: { path: string; authorization: string | undefined }[] = [];
  const server: Server = createServer((req, res) => {
    seen.push({ path: req.url ?? '/', authorization: req.headers.authorization });
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return { seen, port, url: `http://127.0.0.1:${port}`, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
}

/** Answers every request as a resource server that refuses the token. */
function refuseToken(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(401, { 'www-authenticate': 'Bearer error="invalid_token"', 'content-type': 'application/json' });
  res.end('{"error":"invalid_token","message":"no"}');
}

/** A proxy in front of the auth server that counts requests by path and can drop a response. */
async function startCountingProxy(target: string) {
  const state = { counts: new Map<string, number>(), dropNextRefresh: false, authorizations: [] as (string | undefined)[] };
  const server: Server = createServer(async (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    state.counts.set(path, (state.counts.get(path) ?? 0) + 1);
    state.authorizations.push(req.headers.authorization);
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

  async function signedInClient(options: Partial<AuthClientOptions> = {}) {
    const { username, password } = await signUp(t);
    const client = createAuthClient({ baseUrl: proxy.url, autoRefresh: false, ...options });
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
    // A resource server, listed in apiOrigins, that refuses every token (say, configured for another audience).
    const refuser = await startRecordingServer(refuseToken);
    try {
      const { client } = await signedInClient({ apiOrigins: [refuser.url] });
      const before = proxy.refreshes();
      const res = await client.fetch(`${refuser.url}/`);
      assert.equal(res.status, 401);
      assert.equal(refuser.seen.length, 2, 'sent, then retried exactly once');
      assert.ok(refuser.seen.every((r) => r.authorization?.startsWith('Bearer ')));
      assert.equal(proxy.refreshes() - before, 1, 'one refresh, no loop');
    } finally {
      await refuser.close();
    }
  });

  test('another origin gets no access token, and its 401 causes no refresh, retry or logout', async () => {
    const api = await startCountingProxy(t.url);
    const foreign = await startRecordingServer(refuseToken);
    try {
      const { client, logouts } = await signedInClient({ apiOrigins: [api.url] });
      const token = client.getAccessToken();
      const before = proxy.refreshes();
      for (const input of [`${foreign.url}/a`, new URL(`${foreign.url}/b`), new Request(`${foreign.url}/c`, { method: 'POST', body: 'x' })]) {
        const res = await client.fetch(input);
        assert.equal(res.status, 401, 'the 401 comes back as it is');
        assert.equal((await res.json()).error, 'invalid_token');
      }
      assert.deepEqual(foreign.seen, [
        { path: '/a', authorization: undefined },
        { path: '/b', authorization: undefined },
        { path: '/c', authorization: undefined },
      ], 'sent once each, without our token: no retry');
      // The caller's own Authorization for another origin is theirs: sent as given, never replaced by ours.
      await client.fetch(`${foreign.url}/d`, { headers: { authorization: 'Basic dGhlaXJzOm93bg==' } });
      assert.equal(foreign.seen.at(-1)?.authorization, 'Basic dGhlaXJzOm93bg==');
      assert.equal(proxy.refreshes() - before, 0, 'the auth server saw no /auth/refresh');
      assert.deepEqual(logouts, []);
      assert.equal(client.getAccessToken(), token, 'the session is untouched');
      assert.equal((await client.fetch(`${proxy.url}/auth/me`)).status, 200, 'and still works');
      assert.equal(proxy.state.authorizations.at(-1), `Bearer ${token}`);
    } finally {
      await api.close();
      await foreign.close();
    }
  });

  test('a cookie-mode client does not restore its session for a request to another origin', async () => {
    const foreign = await startRecordingServer((_req, res) => res.end('ok'));
    try {
      const client = createAuthClient({ baseUrl: proxy.url, storage: 'cookie', autoRefresh: false, crossTab: false });
      clients.push(client);
      const before = proxy.refreshes();
      assert.equal((await client.fetch(`${foreign.url}/`)).status, 200);
      assert.equal(proxy.refreshes() - before, 0, 'no /auth/refresh for a foreign request');
      await client.fetch(`${proxy.url}/healthz`);
      assert.equal(proxy.refreshes() - before, 1, 'a request to the auth server’s origin does restore');
    } finally {
      await foreign.close();
    }
  });

  test('an origin in apiOrigins gets the access token, and its token 401 refreshes once and retries', async () => {
    // A second origin in front of the auth server: its /auth/me checks the token for real.
    const api = await startCountingProxy(t.url);
    try {
      const { client, logouts } = await signedInClient({ apiOrigins: [`${api.url}/`] });
      const first = await client.fetch(`${api.url}/auth/me`);
      assert.equal(first.status, 200);
      assert.equal(api.state.authorizations.at(-1), `Bearer ${client.getAccessToken()}`);
      t.clock.advance(15 * 60 + 10);
      const before = proxy.refreshes();
      const responses = await Promise.all(Array.from({ length: 5 }, () => client.fetch(`${api.url}/auth/me`)));
      assert.deepEqual(responses.map((r) => r.status), [200, 200, 200, 200, 200]);
      assert.equal(proxy.refreshes() - before, 1, 'one refresh, at the auth server');
      assert.equal(api.refreshes(), 0, 'never at the API');
      assert.equal(api.state.counts.get('/auth/me'), 1 + 5 + 5, 'each sent, then retried once');
      assert.deepEqual(logouts, []);
    } finally {
      await api.close();
    }
  });

  test('the same host on another port or scheme, or under another name, is another origin', async () => {
    const server = await startRecordingServer((_req, res) => res.end('ok'));
    try {
      const { client } = await signedInClient({ apiOrigins: [`https://127.0.0.1:${server.port}`, `http://127.0.0.1:${server.port + 1}`, `http://localhost:${server.port}`] });
      await client.fetch(`http://127.0.0.1:${server.port}/`);
      assert.deepEqual(server.seen.map((r) => r.authorization), [undefined], 'https listed, http requested; other ports; localhost listed, 127.0.0.1 requested');
      assert.equal(client.attachesTokenTo(`https://127.0.0.1:${server.port}/x`), true);
      assert.equal(client.attachesTokenTo(`http://127.0.0.1:${server.port}/x`), false);
      assert.equal(client.attachesTokenTo(`${proxy.url}/anything?at=all`), true, 'baseUrl’s origin always');

      const named = createAuthClient({ baseUrl: 'https://auth.example.com', apiOrigins: ['https://API.example.com:443/'], autoRefresh: false, crossTab: false });
      clients.push(named);
      assert.equal(named.attachesTokenTo('https://api.example.com/v1/x'), true, 'the default port, any case');
      for (const url of [
        'http://api.example.com/x',
        'https://api.example.com:8443/x',
        'https://sub.api.example.com/x',
        'https://api.example.com.evil.com/x',
        'https://evilapi.example.com/x',
        'https://example.com/x',
        'https://api.example.com@evil.com/x',
        'wss://api.example.com/x',
        'blob:https://api.example.com/0b9c',
        '/relative',
        'not a url',
      ]) {
        assert.equal(named.attachesTokenTo(url), false, url);
      }
    } finally {
      await server.close();
    }
  });

  test('bad apiOrigins entries throw a TypeError naming the entry, when the client is created', () => {
    const bad: unknown[] = [
      'api.example.com',
      'https://api.example.com/v1',
      'https://api.example.com/?x=1',
      'https://api.example.com?',
      'https://api.example.com#top',
      'https://user:pw@api.example.com',
      'https://@api.example.com',
      'https://*.example.com',
      '*',
      'ftp://api.example.com',
      'file:///etc/passwd',
      '',
      42,
      null,
    ];
    for (const entry of bad) {
      assert.throws(
        () => createAuthClient({ baseUrl: 'https://auth.example.com', apiOrigins: ['https://ok.example.com', entry as string], crossTab: false }),
        (e: Error) => e instanceof TypeError && e.message.includes(JSON.stringify(entry)),
        String(entry),
      );
    }
    assert.throws(() => createAuthClient({ baseUrl: 'https://auth.example.com', apiOrigins: 'https://api.example.com' as never }), TypeError);
    createAuthClient({ baseUrl: 'https://auth.example.com', apiOrigins: [], crossTab: false }).close();
  });

  test('in Node a relative URL rejects with a clear TypeError, and nothing is sent', async () => {
    const { client } = await signedInClient();
    const before = proxy.state.counts.get('/auth/me') ?? 0;
    await assert.rejects(client.fetch('/auth/me'), (e: Error) => e instanceof TypeError && /relative URL.*absolute URL/.test(e.message));
    assert.equal(proxy.state.counts.get('/auth/me') ?? 0, before);
  });

  test('a redirect from a listed origin to another carries no token there, and the 401 it lands on refreshes nothing', async () => {
    const foreign = await startRecordingServer(refuseToken);
    const redirector = await startRecordingServer((req, res) => {
      if (req.url === '/end') return void res.end('same origin');
      res.writeHead(302, { location: req.url === '/same' ? '/end' : `${foreign.url}/landed` }).end();
    });
    try {
      const { client, logouts } = await signedInClient({ apiOrigins: [redirector.url] });
      const token = client.getAccessToken();
      const before = proxy.refreshes();
      const res = await client.fetch(`${redirector.url}/go`);
      assert.equal(res.status, 401);
      assert.equal(res.url, `${foreign.url}/landed`);
      assert.deepEqual(redirector.seen, [{ path: '/go', authorization: `Bearer ${token}` }]);
      assert.deepEqual(foreign.seen, [{ path: '/landed', authorization: undefined }], 'fetch drops Authorization on a cross-origin redirect; no retry');
      assert.equal(proxy.refreshes() - before, 0);
      assert.deepEqual(logouts, []);
      // A same-origin redirect keeps it.
      assert.equal((await client.fetch(`${redirector.url}/same`)).status, 200);
      assert.deepEqual(redirector.seen.slice(1).map((r) => r.authorization), [`Bearer ${token}`, `Bearer ${token}`]);

      const hops: string[] = [];
      const api = axios.create({ baseURL: redirector.url, beforeRedirect: (options) => void hops.push(String(options.href)) });
      withAuth(api, client);
      await assert.rejects(api.get('/go'), (e: { response?: { status: number } }) => e.response?.status === 401);
      assert.deepEqual(hops, [`${foreign.url}/landed`], 'the caller’s own beforeRedirect still runs');
      assert.equal(redirector.seen.at(-1)?.authorization, `Bearer ${token}`);
      assert.deepEqual(foreign.seen.at(-1), { path: '/landed', authorization: undefined }, 'axios: no token after the redirect either');
      assert.equal(foreign.seen.length, 2, 'axios: no retry');
      assert.equal(proxy.refreshes() - before, 0, 'axios: no refresh');
    } finally {
      await foreign.close();
      await redirector.close();
    }
  });

  test('axios: the token only for baseUrl’s origin and apiOrigins, as axios resolves url and baseURL; a foreign 401 refreshes nothing', async () => {
    const listed = await startCountingProxy(t.url);
    const foreign = await startRecordingServer(refuseToken);
    try {
      const { client, logouts } = await signedInClient({ apiOrigins: [listed.url] });
      const token = client.getAccessToken();
      const before = proxy.refreshes();

      const toForeign = axios.create({ baseURL: foreign.url });
      withAuth(toForeign, client);
      await assert.rejects(toForeign.get('/x'), (e: { response?: { status: number } }) => e.response?.status === 401);
      assert.deepEqual(foreign.seen, [{ path: '/x', authorization: undefined }], 'no token, no retry');

      const api = axios.create({ baseURL: listed.url });
      withAuth(api, client);
      assert.equal((await api.get('/auth/me')).status, 200);
      assert.equal(listed.state.authorizations.at(-1), `Bearer ${token}`);
      // An absolute url overrides baseURL in axios: that request goes to the foreign origin, without the token.
      await assert.rejects(api.get(`${foreign.url}/abs`));
      assert.deepEqual(foreign.seen.at(-1), { path: '/abs', authorization: undefined });
      // With allowAbsoluteUrls: false axios joins it under baseURL instead: the listed origin, with the token.
      await assert.rejects(api.get(`${foreign.url}/abs`, { allowAbsoluteUrls: false }), (e: { response?: { status: number } }) => e.response?.status === 404);
      assert.equal(listed.state.authorizations.at(-1), `Bearer ${token}`);
      assert.equal(foreign.seen.length, 2);
      // A caller's own Authorization to another origin is left alone.
      await assert.rejects(toForeign.get('/own', { headers: { Authorization: 'Bearer theirs' } }));
      assert.equal(foreign.seen.at(-1)?.authorization, 'Bearer theirs');
      assert.equal(proxy.refreshes() - before, 0, 'no refresh for any foreign 401');
      assert.deepEqual(logouts, []);

      // The listed origin's token 401 refreshes once and retries.
      t.clock.advance(15 * 60 + 10);
      const results = await Promise.all(Array.from({ length: 5 }, () => api.get('/auth/me')));
      assert.ok(results.every((r) => r.status === 200));
      assert.equal(proxy.refreshes() - before, 1);
      assert.equal(listed.refreshes(), 0);
    } finally {
      await listed.close();
      await foreign.close();
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
