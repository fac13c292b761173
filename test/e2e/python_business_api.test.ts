import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { decodeJwt, decodeProtectedHeader, SignJWT } from 'jose';
import { badTokens, startTripwire, type Tripwire } from '../support/bad_tokens.js';
import { ManualClock, signUp, startTestServer, type TestServer } from '../support/test_server.js';

/** Debian's interpreter, with python3-jwt and python3-cryptography (not a pyenv one on PATH). */
const PYTHON = '/usr/bin/python3';
const APP = fileURLToPath(new URL('../../examples/python-business-api/app.py', import.meta.url));
const SECRET_A = 'python-test-feed-secret-a-0123456789';
const SECRET_B = 'python-test-feed-secret-b-0123456789';

function pythonMissing(): string | false {
  const probe = spawnSync(PYTHON, ['-c', 'import jwt, cryptography'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    return `${PYTHON} cannot import jwt, cryptography (apt-get install python3-jwt python3-cryptography): ${probe.error?.message ?? probe.stderr.trim()}`;
  }
  return false;
}

/** What app.py answers: a profile, an error body, or its health. */
interface ApiBody {
  id?: string;
  username?: string;
  roles?: string[];
  session_id?: string;
  error?: string;
  message?: string;
  revocation_feed?: { up_to_date: boolean; remembered: number };
}

interface ApiResponse {
  status: number;
  headers: Headers;
  body: ApiBody;
}

interface PythonApi {
  url: string;
  child: ChildProcess;
  log(): string;
  get(path: string, token?: string, scheme?: string): Promise<ApiResponse>;
  stop(): Promise<void>;
}

/** Starts app.py with PORT=0 and waits for the port it prints, then for its first complete read of the revocation feed. */
async function startPython(env: Record<string, string>): Promise<PythonApi> {
  const childEnv: NodeJS.ProcessEnv = { ...process.env, PORT: '0', HOST: '127.0.0.1', NO_PROXY: '*', no_proxy: '*', ...env };
  // A pyenv's paths must not leak into Debian's interpreter.
  delete childEnv.PYTHONPATH;
  delete childEnv.PYTHONHOME;
  const child = spawn(PYTHON, [APP], { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`app.py printed no port within 10 s: ${stderr}`)), 10_000);
    child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`app.py exited with ${code}: ${stderr}`));
    });
  });
  const api: PythonApi = {
    url,
    child,
    log: () => stderr,
    async get(path, token, scheme = 'Bearer') {
      const response = await fetch(url + path, { headers: token === undefined ? {} : { authorization: `${scheme} ${token}` } });
      const text = await response.text();
      let body: ApiBody = { message: text };
      try {
        body = JSON.parse(text) as ApiBody;
      } catch {}
      return { status: response.status, headers: response.headers, body };
    },
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) return resolve();
        child.once('exit', () => resolve());
        child.kill('SIGTERM');
      }),
  };
  const started = Date.now();
  while (!(await api.get('/healthz')).body.revocation_feed?.up_to_date) {
    if (Date.now() - started > 10_000) throw new Error(`app.py did not read the revocation feed within 10 s: ${stderr}`);
    await sleep(50);
  }
  return api;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

async function issuerOf(t: TestServer): Promise<string> {
  return (await t.call('GET', '/.well-known/openid-configuration')).body.issuer as string;
}

function assertRefused(res: ApiResponse, code: string, what: string): void {
  assert.equal(res.status, 401, `${what}: ${JSON.stringify(res.body)}`);
  assert.equal(res.body.error, code, what);
  assert.equal(typeof res.body.message, 'string', what);
  assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token", error_description="[^"]*"$/, what);
}

describe('the Python business API (PyJWT) against real auth servers', { skip: pythonMissing() }, () => {
  // Python checks exp against the real time: these servers sign with it too.
  let a: TestServer;
  let b: TestServer;
  let bOpen = true;
  let py: PythonApi;
  let pyB: PythonApi;
  let tripwire: Tripwire;

  before(async () => {
    tripwire = await startTripwire();
    a = await startTestServer({ clock: Date.now, feedSecret: SECRET_A });
    // Another auth server, with another issuer and audience, followed by a second app.py with a short staleness bound.
    b = await startTestServer({ clock: Date.now, feedSecret: SECRET_B, audience: 'billing-api' });
    py = await startPython({ TESSERA_ISSUER: await issuerOf(a), TESSERA_FEED_SECRET: SECRET_A });
    pyB = await startPython({ TESSERA_ISSUER: await issuerOf(b), TESSERA_AUDIENCE: 'billing-api', TESSERA_FEED_SECRET: SECRET_B, TESSERA_FEED_MAX_STALENESS: '3' });
  });
  after(async () => {
    await Promise.all([py?.stop(), pyB?.stop()]);
    await a?.close();
    if (bOpen) await b?.close();
    await tripwire?.close();
  });

  test('a valid access token: 200 with its user', async () => {
    const { pair, username, userId } = await signUp(a);
    const res = await py.get('/api/profile', pair.access_token);
    assert.equal(res.status, 200, `${JSON.stringify(res.body)}\n${py.log()}`);
    assert.deepEqual(
      { id: res.body.id, username: res.body.username, roles: res.body.roles, session_id: res.body.session_id },
      { id: userId, username, roles: [], session_id: pair.session_id },
    );
    assert.equal((await py.get('/healthz')).status, 200);
  });

  test('no token or a malformed header: 401 invalid_token with the contract body and WWW-Authenticate', async () => {
    assertRefused(await py.get('/api/profile'), 'invalid_token', 'no Authorization');
    const { pair } = await signUp(a);
    assertRefused(await py.get('/api/profile', pair.access_token, 'Basic'), 'invalid_token', 'Basic scheme');
    assertRefused(await py.get('/api/profile', `${pair.access_token} extra`), 'invalid_token', 'three parts');
    const unknown = await py.get('/api/nothing');
    assert.equal(unknown.status, 404);
    assert.equal(unknown.body.error, 'not_found');
  });

  test('the refresh token is refused: its typ is not at+jwt', async () => {
    const { pair } = await signUp(a);
    assert.equal(decodeProtectedHeader(pair.refresh_token).typ, 'refresh+jwt');
    assertRefused(await py.get('/api/profile', pair.refresh_token), 'invalid_token', 'refresh token');
    // Its aud (the issuer) would refuse it too; with every access claim, typ alone must.
    const signer = a.server.context.keys.signer;
    const retyped = await new SignJWT(decodeJwt(pair.access_token))
      .setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: 'refresh+jwt' })
      .sign(signer.key);
    assertRefused(await py.get('/api/profile', retyped), 'invalid_token', 'access claims under typ refresh+jwt');
    const rfc9068 = await new SignJWT(decodeJwt(pair.access_token))
      .setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: 'application/AT+JWT' })
      .sign(signer.key);
    assert.equal((await py.get('/api/profile', rfc9068)).status, 200, 'typ application/at+jwt, any case');
  });

  test('the bad-token table: alg none, HS256 with the public key, wrong typ/iss/aud, expired, …; jku/x5u never fetched', async () => {
    const { pair } = await signUp(a);
    // badTokens dates its expired and nbf tokens by the server's clock: here, the real one.
    const table = await badTokens({ ...a, clock: new ManualClock(Date.now()) }, pair, tripwire.url);
    for (const bad of table) assertRefused(await py.get('/api/profile', bad.token), bad.code, bad.name);
    assert.equal(tripwire.hits, 0, 'a jku/x5u URL was fetched');
    assert.equal((await py.get('/api/profile', pair.access_token)).status, 200, 'the genuine token still passes');
  });

  test("another auth server's tokens are refused both ways (issuer, audience, keys)", async () => {
    const fromA = (await signUp(a)).pair.access_token;
    const fromB = (await signUp(b)).pair.access_token;
    assert.equal((await pyB.get('/api/profile', fromB)).status, 200, pyB.log());
    assertRefused(await py.get('/api/profile', fromB), 'invalid_token', "B's token at A's API");
    assertRefused(await pyB.get('/api/profile', fromA), 'invalid_token', "A's token at B's API");
  });

  test('admin: 403 insufficient_scope without the role, 200 with it', async () => {
    const { pair, userId } = await signUp(a);
    const denied = await py.get('/api/admin', pair.access_token);
    assert.equal(denied.status, 403);
    assert.equal(denied.body.error, 'insufficient_scope');
    assert.equal(typeof denied.body.message, 'string');
    assert.match(denied.headers.get('www-authenticate') ?? '', /^Bearer error="insufficient_scope"/);
    await a.server.context.store.db.query("UPDATE users SET roles = '{admin}' WHERE id = $1", [userId]);
    const refreshed = await a.call('POST', '/auth/refresh', { token: pair.refresh_token });
    assert.equal(refreshed.status, 200);
    const allowed = await py.get('/api/admin', refreshed.body.access_token);
    assert.equal(allowed.status, 200, JSON.stringify(allowed.body));
  });

  test('a logout reaches the Python API through the revocation feed within 2 s', async () => {
    const { pair } = await signUp(a);
    assert.equal((await py.get('/api/profile', pair.access_token)).status, 200);
    assert.equal((await a.call('POST', '/auth/logout', { token: pair.access_token })).status, 204);
    const started = Date.now();
    let res = await py.get('/api/profile', pair.access_token);
    while (res.status === 200 && Date.now() - started < 2000) {
      await sleep(25);
      res = await py.get('/api/profile', pair.access_token);
    }
    assertRefused(res, 'token_revoked', `${Date.now() - started} ms after the logout`);
  });

  test('fail closed: once the feed has not been read for longer than its staleness bound, every token is 503', async () => {
    const { pair } = await signUp(b);
    assert.equal((await pyB.get('/api/profile', pair.access_token)).status, 200);
    await b.close();
    bOpen = false;
    // The keys stay cached; only the feed is missing. Bound 3 s, plus a poll and its timeout.
    const started = Date.now();
    let res = await pyB.get('/api/profile', pair.access_token);
    while (res.status === 200 && Date.now() - started < 10_000) {
      await sleep(100);
      res = await pyB.get('/api/profile', pair.access_token);
    }
    assert.equal(res.status, 503, `${JSON.stringify(res.body)}\n${pyB.log()}`);
    assert.equal(res.body.error, 'unavailable');
    assert.ok(Number(res.headers.get('retry-after')) > 0);
    assert.ok(Date.now() - started >= 1500, `refused after ${Date.now() - started} ms, well before its 3 s bound`);
    assert.equal((await pyB.get('/healthz')).body.revocation_feed?.up_to_date, false);
  });
});
