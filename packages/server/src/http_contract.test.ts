import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { errorCodes } from '@tessera/protocol';
import { decodeJwt } from 'jose';
import { captureLogs } from '../../../test/support/log_capture.js';
import { signUp, startTestServer, type TestServer, uniqueName } from '../../../test/support/test_server.js';

describe('bad input gets a clear error and changes nothing', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  const userCount = async () => Number((await t.server.context.store.db.query<{ n: string }>('SELECT count(*)::text AS n FROM users')).rows[0]!.n);

  test('malformed JSON, missing and wrong-typed fields, extra fields, oversized bodies: invalid_request', async () => {
    const before = await userCount();
    const cases: { body: unknown; headers?: Record<string, string> }[] = [
      { body: '{"username": "x", "password": ' },
      { body: '{}' },
      { body: { username: 'someone' } },
      { body: { password: 'long enough password' } },
      { body: { username: 123, password: 'long enough password' } },
      { body: { username: 'someone', password: 12345678 } },
      { body: { username: ['a'], password: 'long enough password' } },
      { body: { username: 'someone', password: 'long enough password', admin: true } },
      { body: '"just a string"' },
      { body: '{"__proto__": {"admin": true}, "username": "x", "password": "long enough password"}' },
      { body: JSON.stringify({ username: 'someone', password: 'x'.repeat(20_000) }) },
      { body: 'username=a&password=b', headers: { 'content-type': 'application/x-www-form-urlencoded' } },
    ];
    for (const [i, c] of cases.entries()) {
      for (const path of ['/auth/register', '/auth/login']) {
        const res = await t.call('POST', path, { body: c.body, headers: c.headers });
        assert.equal(res.status, 400, `case ${i} on ${path}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error, 'invalid_request', `case ${i} on ${path}`);
        assert.equal(typeof res.body.message, 'string');
        assert.deepEqual(Object.keys(res.body).sort(), ['error', 'message']);
      }
    }
    assert.equal(await userCount(), before, 'no user was created');
  });

  test('usernames of the wrong shape and weak passwords are refused before anything is written', async () => {
    const before = await userCount();
    for (const username of ['ab', 'x'.repeat(65), 'has space', '<script>', 'semi;colon']) {
      const res = await t.call('POST', '/auth/register', { body: { username, password: 'long enough password' } });
      assert.equal(res.body.error, 'invalid_request', username);
    }
    for (const password of ['', 'short', '1234567', 'x'.repeat(1025)]) {
      const res = await t.call('POST', '/auth/register', { body: { username: uniqueName(), password } });
      assert.equal(res.status, 400);
      assert.equal(res.body.error, 'weak_password', `length ${password.length}`);
    }
    // 8 characters, counted as characters, not bytes: four emoji are 4 characters, not enough.
    assert.equal((await t.call('POST', '/auth/register', { body: { username: uniqueName(), password: '🔑🔑🔑🔑' } })).body.error, 'weak_password');
    assert.equal(await userCount(), before);
    assert.equal((await t.call('POST', '/auth/register', { body: { username: uniqueName(), password: '🔑'.repeat(8) } })).status, 201);
    assert.equal((await t.call('POST', '/auth/register', { body: { username: uniqueName(), password: 'x'.repeat(1024) } })).status, 201);
  });

  test('username_taken is 409, case-insensitively', async () => {
    const { username } = await signUp(t);
    const res = await t.call('POST', '/auth/register', { body: { username: username.toUpperCase(), password: 'another password' } });
    assert.equal(res.status, 409);
    assert.equal(res.body.error, 'username_taken');
  });

  test('unknown routes and methods are not_found in the contract shape', async () => {
    for (const [method, path] of [['GET', '/nope'], ['POST', '/auth/nope'], ['GET', '/auth/login']] as const) {
      const res = await t.call(method, path);
      assert.equal(res.status, 404);
      assert.deepEqual(res.body, { error: 'not_found', message: 'Not found.' });
    }
  });

  test("the framework's own refusals (URL too long, bad percent-encoding, headers too large, not HTTP) are invalid_request in the contract shape, echoing nothing", async () => {
    for (const [method, path] of [
      ['DELETE', `/auth/sessions/${'a'.repeat(5000)}`],
      ['GET', '/auth/%ff%fe'],
      ['DELETE', '/auth/sessions/%ff%fe'],
    ] as const) {
      const res = await fetch(t.url + path, { method });
      assert.equal(res.status, 400, path.slice(0, 40));
      const body = (await res.json()) as Record<string, unknown>;
      assert.deepEqual(Object.keys(body).sort(), ['error', 'message']);
      assert.equal(body.error, 'invalid_request');
      assert.doesNotMatch(String(body.message), /aaaa|%ff|sessions/, 'the URL is not echoed');
    }
    const { connect } = await import('node:net');
    const raw = (data: string) =>
      new Promise<string>((resolve) => {
        const socket = connect(Number(new URL(t.url).port), '127.0.0.1');
        let out = '';
        socket.on('data', (d) => (out += d));
        socket.on('close', () => resolve(out));
        socket.on('error', () => resolve(out));
        socket.write(data);
      });
    for (const request of [`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(100_000)}\r\n\r\n`, 'NOT HTTP AT ALL\r\n\r\n']) {
      const answer = await raw(request);
      assert.match(answer, /^HTTP\/1\.1 400 /);
      const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
      assert.deepEqual(Object.keys(body).sort(), ['error', 'message']);
      assert.equal(body.error, 'invalid_request');
      assert.doesNotMatch(answer, /bbbb/);
    }
  });

  test('no user enumeration: unknown user and wrong password get the same body after the same work', async () => {
    const { username } = await signUp(t);
    const unknown = await t.call('POST', '/auth/login', { body: { username: uniqueName('ghost'), password: 'whatever password' } });
    const wrong = await t.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } });
    assert.equal(unknown.status, 401);
    assert.equal(wrong.status, 401);
    assert.deepEqual(unknown.body, { error: 'invalid_credentials', message: 'Invalid username or password.' });
    assert.deepEqual(wrong.body, unknown.body);
    assert.equal(unknown.headers.get('www-authenticate'), wrong.headers.get('www-authenticate'));
    // Both pay one argon2id verify. Measured interleaved (so load on the machine hits
    // both alike); a skipped hash would be ~50x faster, so a factor of 4 still catches it.
    const known: number[] = [];
    const ghost: number[] = [];
    const time = async (name: string, into: number[]) => {
      const start = performance.now();
      await t.call('POST', '/auth/login', { body: { username: name, password: 'wrong password!!' } });
      into.push(performance.now() - start);
    };
    for (let i = 0; i < 9; i++) {
      await time(username, known);
      await time(uniqueName('ghost'), ghost);
    }
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const [k, g] = [median(known), median(ghost)];
    assert.ok(g > k / 4 && g < k * 4, `unknown ${g.toFixed(1)} ms vs wrong password ${k.toFixed(1)} ms`);
  });

  test('a disabled account learns so only with the right password', async () => {
    const { username, password, userId } = await signUp(t);
    await t.server.context.store.db.query('UPDATE users SET disabled_at = now() WHERE id = $1', [userId]);
    const wrong = await t.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } });
    assert.equal(wrong.body.error, 'invalid_credentials');
    const right = await t.call('POST', '/auth/login', { body: { username, password } });
    assert.equal(right.status, 403);
    assert.equal(right.body.error, 'account_disabled');
  });

  test('the OpenAPI 3.1 description lists every route and the error codes of each', async () => {
    const res = await t.call('GET', '/openapi.json');
    assert.equal(res.status, 200);
    assert.equal(res.body.openapi, '3.1.0');
    for (const path of ['/auth/register', '/auth/login', '/auth/refresh', '/auth/logout', '/auth/logout-all', '/auth/me', '/auth/sessions', '/auth/sessions/{id}', '/auth/password', '/auth/audit', '/.well-known/jwks.json', '/.well-known/openid-configuration', '/healthz', '/readyz']) {
      assert.ok(res.body.paths[path], `missing ${path}`);
    }
    const refresh = res.body.paths['/auth/refresh'].post.responses;
    assert.match(refresh['401'].description, /token_reused/);
    assert.deepEqual(res.body.components.schemas.ErrorBody.properties.error.enum, errorCodes);
    assert.ok(res.body.components.securitySchemes.bearer);
  });

  test('the OpenAPI description is valid for generators: a validator passes it, every operation has a unique operationId, servers, security and its 400', async () => {
    const { Validator } = await import('@seriousme/openapi-schema-validator');
    const doc = (await t.call('GET', '/openapi.json')).body;
    const result = await new Validator().validate(structuredClone(doc));
    assert.ok(result.valid, JSON.stringify(result.errors)?.slice(0, 1000));
    assert.deepEqual(doc.servers, [{ url: t.server.context.issuer(), description: 'this auth server' }]);
    const ids: string[] = [];
    const publicOps = new Set(['register', 'login', 'getJwks', 'getOpenIdConfiguration', 'healthz', 'readyz', 'metrics', 'listRevocations', 'forgotPassword', 'resetPassword', 'verifyEmail', 'loginMfa', 'passkeyLoginOptions', 'loginWithPasskey']);
    for (const [path, item] of Object.entries(doc.paths as Record<string, Record<string, { operationId?: string; security?: unknown[]; responses: Record<string, unknown> }>>)) {
      for (const [method, op] of Object.entries(item)) {
        assert.ok(op.operationId, `${method} ${path} has an operationId`);
        ids.push(op.operationId);
        if (publicOps.has(op.operationId)) assert.deepEqual(op.security, [], `${op.operationId} says it needs no credentials`);
        else assert.ok(Array.isArray(op.security) && op.security.length > 0, `${op.operationId} says what it needs`);
        if (!['getJwks', 'getOpenIdConfiguration', 'healthz', 'readyz', 'metrics'].includes(op.operationId)) {
          assert.ok(op.responses['400'], `${op.operationId} declares its 400`);
        }
      }
    }
    assert.equal(new Set(ids).size, ids.length, 'operationIds are unique');
    assert.equal(doc.paths['/auth/refresh'].post.requestBody.required, false, 'refresh needs no body');
    assert.ok(doc.paths['/auth/refresh'].post.requestBody.content['application/x-www-form-urlencoded'], 'the OAuth form grant is described');
  });

  test('health: healthz and readyz answer 200 while the database does', async () => {
    assert.deepEqual((await t.call('GET', '/healthz')).body, { status: 'ok' });
    assert.equal((await t.call('GET', '/readyz')).status, 200);
  });
});

describe('cookie mode', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t.close());

  async function cookieLogin() {
    const { username, password } = await signUp(t);
    const res = await fetch(`${t.url}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username, password, use_cookie: true }),
    });
    return { res, body: await res.json(), cookie: res.headers.get('set-cookie') ?? '' };
  }

  test('login sets an httpOnly, SameSite=Strict cookie on /auth and leaves the refresh token out of the JSON', async () => {
    const { res, body, cookie } = await cookieLogin();
    assert.equal(res.status, 200);
    assert.equal(body.refresh_token, undefined);
    assert.ok(body.access_token);
    assert.match(cookie, /^tessera_refresh=[\w-]+\.[\w-]+\.[\w-]+;/);
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    assert.match(cookie, /Path=\/auth(;|$)/);
    assert.match(cookie, /Max-Age=\d+/);
    assert.doesNotMatch(cookie, /Secure/, 'plain http on localhost is the one case without Secure');
    assert.equal(res.headers.get('cache-control'), 'no-store');
  });

  const cookiePair = (setCookie: string) => setCookie.split(';')[0]!;

  test('refresh with the cookie rotates it; the same cookie within grace gets the same successor', async () => {
    const { cookie } = await cookieLogin();
    const first = await fetch(`${t.url}/auth/refresh`, { method: 'POST', headers: { cookie: cookiePair(cookie) } });
    assert.equal(first.status, 200);
    const firstBody = await first.json();
    assert.equal(firstBody.refresh_token, undefined);
    const rotated = first.headers.get('set-cookie') ?? '';
    assert.notEqual(cookiePair(rotated), cookiePair(cookie));
    const replay = await fetch(`${t.url}/auth/refresh`, { method: 'POST', headers: { cookie: cookiePair(cookie) } });
    assert.equal(replay.status, 200);
    const jti = (c: string) => decodeJwt(cookiePair(c).split('=')[1]!).jti;
    assert.equal(jti(replay.headers.get('set-cookie') ?? ''), jti(rotated));
  });

  test('a cross-site request cannot use the cookie (Origin or Sec-Fetch-Site), and nothing rotates', async () => {
    const { cookie, body } = await cookieLogin();
    const crossSite: Record<string, string>[] = [{ origin: 'https://evil.example' }, { 'sec-fetch-site': 'cross-site' }, { 'sec-fetch-site': 'same-site' }];
    for (const headers of crossSite) {
      const res = await fetch(`${t.url}/auth/refresh`, { method: 'POST', headers: { cookie: cookiePair(cookie), ...headers } });
      assert.equal(res.status, 400);
      assert.equal((await res.json()).error, 'invalid_request');
      const out = await fetch(`${t.url}/auth/logout`, { method: 'POST', headers: { cookie: cookiePair(cookie), ...headers } });
      assert.equal(out.status, 400);
    }
    const state = await t.server.context.store.sessions.refreshState(body.session_id);
    assert.equal(state?.previousHash, null, 'no rotation happened');
    // The same request from our own origin works.
    const own = await fetch(`${t.url}/auth/refresh`, {
      method: 'POST',
      headers: { cookie: cookiePair(cookie), origin: t.url.replace('127.0.0.1', 'localhost'), 'sec-fetch-site': 'same-origin' },
    });
    assert.equal(own.status, 200);
  });

  test('logout with the cookie ends the session and clears the cookie', async () => {
    const { cookie, body } = await cookieLogin();
    const out = await fetch(`${t.url}/auth/logout`, { method: 'POST', headers: { cookie: cookiePair(cookie) } });
    assert.equal(out.status, 204);
    assert.match(out.headers.get('set-cookie') ?? '', /tessera_refresh=;.*(Max-Age=0|Expires=Thu, 01 Jan 1970)/);
    const me = await t.call('GET', '/auth/me', { token: body.access_token });
    assert.equal(me.body.error, 'token_revoked');
    const again = await fetch(`${t.url}/auth/refresh`, { method: 'POST', headers: { cookie: cookiePair(cookie) } });
    assert.equal(again.status, 401);
    assert.equal((await again.json()).error, 'token_revoked');
  });
});

describe('an https issuer makes the cookie Secure', () => {
  test('__Secure-tessera_refresh with Secure', async () => {
    const t = await startTestServer({ issuer: 'https://auth.example.com' });
    try {
      const { username, password } = await signUp(t);
      const res = await t.call('POST', '/auth/login', { body: { username, password, use_cookie: true } });
      const cookie = res.headers.get('set-cookie') ?? '';
      assert.match(cookie, /^__Secure-tessera_refresh=/);
      assert.match(cookie, /; Secure/);
    } finally {
      await t.close();
    }
  });
});

describe('rate limits on login and register', () => {
  test('per username (failed logins): 429 rate_limited with Retry-After, and it lifts with time', async () => {
    const t = await startTestServer({ rateLimit: 'ip=1000/1m,user=3/1m' });
    try {
      const { username, password } = await signUp(t);
      for (let i = 0; i < 3; i++) {
        assert.equal((await t.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } })).status, 401);
      }
      const limited = await t.call('POST', '/auth/login', { body: { username, password } });
      assert.equal(limited.status, 429);
      assert.equal(limited.body.error, 'rate_limited');
      const retryAfter = Number(limited.headers.get('retry-after'));
      assert.ok(retryAfter >= 1 && retryAfter <= 120, `Retry-After ${retryAfter}`);
      // Another user from the same IP is not affected.
      const other = await signUp(t);
      assert.equal((await t.call('POST', '/auth/login', { body: { username: other.username, password: other.password } })).status, 200);
      // Bounded back-off, not a lock: after Retry-After the real user gets in.
      t.clock.advance(retryAfter);
      assert.equal((await t.call('POST', '/auth/login', { body: { username, password } })).status, 200);
    } finally {
      await t.close();
    }
  });

  test('per IP (every attempt, register included)', async () => {
    const t = await startTestServer({ rateLimit: 'ip=4/1m,user=100/1m' });
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 6; i++) {
        statuses.push((await t.call('POST', '/auth/register', { body: { username: uniqueName(), password: 'long enough password' } })).status);
      }
      assert.deepEqual(statuses, [201, 201, 201, 201, 429, 429]);
      const audit = await t.server.context.store.audit.list({ limit: 5 });
      assert.equal(audit[0]?.event, 'rate_limited');
    } finally {
      await t.close();
    }
  });
});

describe('logs never hold a token, a password or a hash', () => {
  test('a full lifecycle with logging on', async () => {
    const logs = captureLogs();
    const t = await startTestServer({ log: 'trace', logStream: logs.stream });
    try {
      const { username, password, pair } = await signUp(t);
      await t.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } });
      const refreshed = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
      await t.call('POST', `/auth/refresh?refresh_token=${pair.refresh_token}`, { body: { refresh_token: pair.refresh_token } });
      await t.call('GET', '/auth/me', { token: `${pair.access_token}x` });
      await t.call('POST', '/auth/password', { token: refreshed.body.access_token, body: { current_password: password, new_password: 'next password 123' } });
      await t.call('POST', '/auth/logout', { token: refreshed.body.access_token });
      const output = logs.text();
      assert.ok(output.includes('login.succeeded'), 'audit lines are logged');
      assert.ok(output.includes('"path":"/auth/refresh"'), 'requests are logged by path');
      for (const secret of [password, 'wrong password!!', 'next password 123', pair.access_token, pair.refresh_token, refreshed.body.refresh_token, '$argon2id$']) {
        assert.ok(!output.includes(secret), `log holds a secret: ${secret.slice(0, 12)}…`);
      }
      for (const part of pair.refresh_token.split('.')) assert.ok(!output.includes(part));
    } finally {
      await t.close();
    }
  });
});

describe('policies', () => {
  test('--signup closed: register is 403 signup_disabled and creates nothing', async () => {
    const t = await startTestServer({ signup: 'closed' });
    try {
      const username = uniqueName();
      const res = await t.call('POST', '/auth/register', { body: { username, password: 'long enough password' } });
      assert.equal(res.status, 403);
      assert.equal(res.body.error, 'signup_disabled');
      assert.equal(await t.server.context.store.users.findByUsername(username), null);
    } finally {
      await t.close();
    }
  });

  test('--session-policy single: a new login ends the other sessions', async () => {
    const t = await startTestServer({ sessionPolicy: 'single' });
    try {
      const { username, password, pair } = await signUp(t);
      const second = await t.call('POST', '/auth/login', { body: { username, password } });
      assert.equal(second.status, 200);
      assert.equal((await t.call('GET', '/auth/me', { token: pair.access_token })).body.error, 'token_revoked');
      assert.equal((await t.call('POST', '/auth/refresh', { token: pair.refresh_token })).body.error, 'token_revoked');
      assert.equal((await t.call('GET', '/auth/me', { token: second.body.access_token })).status, 200);
      const events = await t.server.context.store.audit.list({ limit: 3 });
      assert.ok(events.some((e) => e.event === 'session.revoked' && e.reason === 'policy_single' && e.sessionId === pair.session_id));
    } finally {
      await t.close();
    }
  });
});

describe('hardening (from the security review)', () => {
  test('an attacker failing from one address cannot lock the user out from another', async () => {
    const t = await startTestServer({ rateLimit: 'ip=1000/1m,user=3/15m', trustProxy: true });
    try {
      const { username, password } = await signUp(t);
      const from = (ip: string) => ({ 'x-forwarded-for': ip });
      for (let i = 0; i < 5; i++) await t.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' }, headers: from('198.51.100.1') });
      const attacker = await t.call('POST', '/auth/login', { body: { username, password }, headers: from('198.51.100.1') });
      assert.equal(attacker.status, 429, 'the guessing address is limited, even with the right password');
      const owner = await t.call('POST', '/auth/login', { body: { username, password }, headers: from('203.0.113.9') });
      assert.equal(owner.status, 200, 'the owner elsewhere is not');
      // Spread over many addresses, the account-wide limit (10x) still stops a botnet.
      for (let i = 0; i < 40; i++) await t.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' }, headers: from(`192.0.2.${i}`) });
      const botnet = await t.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' }, headers: from('192.0.2.200') });
      assert.equal(botnet.status, 429);
    } finally {
      await t.close();
    }
  });

  test('parallel guesses cannot slip past the limit while argon2 runs', async () => {
    const t = await startTestServer({ rateLimit: 'ip=1000/1m,user=5/15m' });
    try {
      const { username } = await signUp(t);
      const results = await Promise.all(
        Array.from({ length: 40 }, () => t.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } })),
      );
      const checked = results.filter((r) => r.status === 401).length;
      assert.equal(checked, 5, `${checked} password checks for a limit of 5`);
      assert.equal(results.filter((r) => r.status === 429).length, 35);
      const rows = await t.server.context.store.audit.list({ limit: 100 });
      assert.equal(rows.filter((e) => e.event === 'rate_limited').length, 1, 'one audit row per limited key and window');
    } finally {
      await t.close();
    }
  });

  test('a NUL in a username and an out-of-range cursor are client errors, not 500s', async () => {
    const t = await startTestServer();
    try {
      const login = await t.call('POST', '/auth/login', { body: { username: 'a\u0000b', password: 'whatever password' } });
      assert.equal(login.status, 401);
      assert.equal(login.body.error, 'invalid_credentials');
      const reg = await t.call('POST', '/auth/register', { body: { username: 'a\u0000bcd', password: 'whatever password' } });
      assert.equal(reg.body.error, 'invalid_request');
      const { pair } = await signUp(t);
      const audit = await t.call('GET', '/auth/audit?before=9999999999999999999', { token: pair.access_token });
      assert.equal(audit.status, 400);
      assert.equal(audit.body.error, 'invalid_request');
    } finally {
      await t.close();
    }
  });

  test('rotation never extends a session past --refresh-ttl from login', async () => {
    const t = await startTestServer({ refreshTtl: '30d' });
    try {
      const { pair } = await signUp(t);
      t.clock.advance(29 * 86400);
      const late = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
      assert.equal(late.status, 200);
      assert.equal(late.body.refresh_expires_in, 86400);
      t.clock.advance(86400);
      const dead = await t.call('POST', '/auth/refresh', { token: late.body.refresh_token });
      assert.equal(dead.body.error, 'token_expired');
    } finally {
      await t.close();
    }
  });

  test('wrong current passwords are audited and count toward the per-account limit: a stolen access token is no password oracle', async () => {
    const t = await startTestServer({ rateLimit: 'ip=100000/1m,user=3/15m' });
    try {
      const { pair, password } = await signUp(t);
      const statuses: number[] = [];
      for (let i = 0; i < 4; i++) {
        const res = await t.call('POST', '/auth/password', { token: pair.access_token, body: { current_password: `guess number ${i}`, new_password: 'new password 123' } });
        statuses.push(res.status);
      }
      assert.deepEqual(statuses, [401, 401, 401, 429]);
      const audit = await t.call('GET', '/auth/audit', { token: pair.access_token });
      const failed = audit.body.events.filter((e: { event: string }) => e.event === 'password.change_failed');
      assert.equal(failed.length, 3);
      assert.equal(failed[0].reason, 'wrong_current_password');
      // The limit holds for the right password too, and for logins to the same account.
      const right = await t.call('POST', '/auth/password', { token: pair.access_token, body: { current_password: password, new_password: 'new password 123' } });
      assert.equal(right.status, 429);
    } finally {
      await t.close();
    }
  });

  test('a wrong current password is a 401 with a challenge that does not blame the token', async () => {
    const t = await startTestServer();
    try {
      const { pair } = await signUp(t);
      const res = await t.call('POST', '/auth/password', { token: pair.access_token, body: { current_password: 'nope nope nope', new_password: 'new password 123' } });
      assert.equal(res.status, 401);
      assert.equal(res.body.error, 'invalid_credentials');
      assert.equal(res.headers.get('www-authenticate'), 'Bearer realm="tessera"');
    } finally {
      await t.close();
    }
  });
});

describe('headers on every answer', () => {
  let t: TestServer;
  let webRoot: string;
  before(async () => {
    webRoot = await mkdtemp(join(tmpdir(), 'tessera-web-'));
    await mkdir(join(webRoot, 'assets'));
    await writeFile(join(webRoot, 'index.html'), '<!doctype html><title>t</title>');
    await writeFile(join(webRoot, 'assets', 'app-1234.js'), 'void 0;');
    t = await startTestServer({ webRoot });
  });
  after(async () => {
    await t.close();
    await rm(webRoot, { recursive: true, force: true });
  });

  test("API answers: no-store under /auth, nosniff, and the server's clock as Date, a new one each second", async () => {
    const { pair } = await signUp(t);
    const refreshed = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    assert.equal(refreshed.status, 200);
    assert.equal(refreshed.headers.get('cache-control'), 'no-store');
    assert.equal(refreshed.headers.get('x-content-type-options'), 'nosniff');
    assert.equal(refreshed.headers.get('date'), new Date(t.clock.now()).toUTCString());
    assert.equal(refreshed.headers.get('content-security-policy'), null, 'the page policy is for the page');
    const refused = await t.call('POST', '/auth/refresh', { token: 'garbage' });
    assert.equal(refused.headers.get('cache-control'), 'no-store', 'errors too');
    t.clock.advance(1.5);
    const later = await t.call('GET', '/.well-known/jwks.json');
    assert.equal(later.headers.get('date'), new Date(t.clock.now()).toUTCString());
    assert.notEqual(later.headers.get('date'), refreshed.headers.get('date'));
    assert.equal(later.headers.get('x-content-type-options'), 'nosniff');
    t.clock.advance(3600);
    assert.equal((await t.call('GET', '/nowhere')).headers.get('date'), new Date(t.clock.now()).toUTCString());
  });

  test('a token pair is no-store even when the request target is in absolute form (POST http://host/auth/login)', async () => {
    const { username, password, pair } = await signUp(t);
    const { hostname, port } = new URL(t.url);
    const raw = (target: string, body: string) =>
      new Promise<string>((resolve, reject) => {
        const socket = connect(Number(port), hostname);
        let answer = '';
        socket.setEncoding('utf8').on('data', (d: string) => (answer += d));
        socket.on('error', reject).on('close', () => resolve(answer));
        socket.write(
          `POST ${target} HTTP/1.1\r\nHost: ${hostname}:${port}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
        );
      });
    for (const [target, body] of [
      [`${t.url}/auth/login`, JSON.stringify({ username, password })],
      [`${t.url}/auth/refresh`, JSON.stringify({ refresh_token: pair.refresh_token })],
      ['/auth/login', JSON.stringify({ username, password })],
    ] as const) {
      const answer = await raw(target, body);
      assert.match(answer, /^HTTP\/1\.1 200 /, target);
      assert.match(answer, /\r\ncache-control: no-store\r\n/i, target);
      assert.match(answer, /\r\npragma: no-cache\r\n/i, target);
      assert.match(answer, /"access_token"/, target);
    }
  });

  test('the page gets its Content-Security-Policy and no-cache; hashed assets are immutable', async () => {
    const page = await fetch(`${t.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-security-policy') ?? '', /default-src 'self'; script-src 'self'/);
    assert.match(page.headers.get('content-security-policy') ?? '', /frame-ancestors 'none'/);
    assert.equal(page.headers.get('x-frame-options'), 'DENY');
    assert.equal(page.headers.get('referrer-policy'), 'no-referrer');
    assert.equal(page.headers.get('cache-control'), 'no-cache');
    assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
    await page.text();
    const asset = await fetch(`${t.url}/assets/app-1234.js`);
    assert.equal(asset.status, 200);
    assert.equal(asset.headers.get('cache-control'), 'public, max-age=31536000, immutable');
    assert.equal(asset.headers.get('content-security-policy'), null);
    assert.equal(await asset.text(), 'void 0;');
  });
});
