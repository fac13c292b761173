import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { TesseraError } from '@tessera/protocol';
import { exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { type BadToken, badTokens, startTripwire, type Tripwire } from '../../../test/support/bad_tokens.js';
import { signUp, startTestServer, type TestServer } from '../../../test/support/test_server.js';
import { createVerifier, createVerifierWith } from './create_verifier.js';
import { joseEngine } from './jose_key_verifier.js';
import { nodeEngine } from './node_key_verifier.js';

/** Serves the auth server's JWKS plus `extraKeys`, counting fetches; can be taken "down". */
async function startJwksProxy(source: string) {
  const state = { fetches: 0, down: false, cacheControl: 'public, max-age=300' as string | null, extraKeys: [] as JWK[] };
  const server: Server = createServer(async (_req, res) => {
    state.fetches += 1;
    if (state.down) {
      res.writeHead(503).end();
      return;
    }
    const upstream = (await (await fetch(source)).json()) as { keys: JWK[] };
    res.writeHead(200, { 'content-type': 'application/json', ...(state.cacheControl ? { 'cache-control': state.cacheControl } : {}) });
    res.end(JSON.stringify({ keys: [...upstream.keys, ...state.extraKeys] }));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    state,
    url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}/jwks.json`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** An ES256 key that is not the auth server's, with its JWK as a JWKS publishes it. */
async function extraKey(kid: string) {
  const { publicKey, privateKey } = await generateKeyPair('ES256', { extractable: true });
  return { kid, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' } as JWK };
}

/** An access token of `issuer` signed with `key`, issued at `nowMs` and valid for `ttl` seconds. */
function accessToken(key: Awaited<ReturnType<typeof extraKey>>, issuer: string, nowMs: number, ttl: number, claims: Record<string, unknown> = {}) {
  const now = Math.floor(nowMs / 1000);
  return new SignJWT({ sub: 'u', sid: 's', jti: 'j', username: 'n', roles: [], ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: key.kid, typ: 'at+jwt' })
    .setIssuer(issuer)
    .setAudience('tessera-api')
    .setIssuedAt(now)
    .setExpirationTime(now + ttl)
    .sign(key.privateKey);
}

for (const engine of [nodeEngine, joseEngine]) describe(`createVerifier, ${engine.name} engine`, () => {
  let t: TestServer;
  let pair: { access_token: string; refresh_token: string; session_id: string };
  let tripwire: Tripwire;
  let table: BadToken[];
  const issuer = 'http://localhost:4000';

  before(async () => {
    t = await startTestServer({ issuer });
    pair = (await signUp(t)).pair;
    tripwire = await startTripwire();
    table = await badTokens(t, pair, tripwire.url);
  });
  after(async () => {
    await t.close();
    await tripwire.close();
  });

  const verifierFor = (jwksUri: string, extra: Partial<Parameters<typeof createVerifier>[0]> = {}) =>
    createVerifierWith(engine, { issuer, audience: 'tessera-api', jwksUri, clock: t.clock.now, ...extra });

  test('a genuine access token verifies to its claims', async () => {
    const verifier = verifierFor(`${t.url}/.well-known/jwks.json`);
    const claims = await verifier.verify(pair.access_token);
    assert.equal(claims.sid, pair.session_id);
    assert.equal(claims.iss, issuer);
    assert.deepEqual(claims.roles, []);
  });

  for (const cache of [false, true]) {
    test(`every bad token of the table is refused with its code${cache ? ', twice, with the cache on' : ''}, and the tripwire is never contacted`, async () => {
      const verifier = verifierFor(`${t.url}/.well-known/jwks.json`, { cache });
      assert.equal(verifier.engine, engine.name);
      await verifier.verify(pair.access_token);
      for (let round = 0; round < (cache ? 2 : 1); round++) {
        for (const bad of table) {
          await assert.rejects(verifier.verify(bad.token), (e: unknown) => e instanceof TesseraError && e.code === bad.code, bad.name);
        }
      }
      assert.equal(tripwire.hits, 0);
    });
  }

  test('a crit header (even b64) and an aud with a non-string member are refused, as by the other engine', async () => {
    const verifier = verifierFor(`${t.url}/.well-known/jwks.json`);
    const signer = t.server.context.keys.signer;
    const claims = (await verifier.verify(pair.access_token)) as unknown as Record<string, unknown>;
    const signed = (payload: Record<string, unknown>, header: Record<string, unknown>) =>
      new SignJWT(payload).setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: 'at+jwt', ...header }).sign(signer.key);
    await assert.rejects(verifier.verify(await signed({ ...claims }, { crit: ['b64'], b64: true })), (e: TesseraError) => e.code === 'invalid_token');
    await assert.rejects(verifier.verify(await signed({ ...claims, aud: ['tessera-api', 5] }, {})), (e: TesseraError) => e.code === 'invalid_token');
    assert.equal((await verifier.verify(await signed({ ...claims, aud: ['other', 'tessera-api'] }, {}))).sid, claims.sid);
  });

  test('with the cache on, a token whose check straddles a key retirement is not cached', async () => {
    const [k1, k2] = [await extraKey('k1'), await extraKey('k2')];
    let nowMs = t.clock.now();
    let jwks = { keys: [k1.jwk] };
    let gate: Promise<void> = Promise.resolve();
    const fetchJwks = (async () => {
      await gate;
      return new Response(JSON.stringify(jwks), { headers: { 'cache-control': 'max-age=60' } });
    }) as typeof globalThis.fetch;
    const verifier = createVerifierWith(engine, { issuer, audience: 'tessera-api', jwksUri: 'http://jwks.invalid/jwks.json', fetch: fetchJwks, clock: () => nowMs, cache: true });
    await verifier.prefetch();
    const forged = await accessToken(k1, issuer, nowMs, 86_400 * 365, { username: 'mallory', roles: ['admin'] });
    // k1 is retired; its max-age has passed, so the next check starts the refetch,
    // whose answer (without k1) lands while that check is still running.
    nowMs += 61_000;
    let release!: () => void;
    gate = new Promise((resolve) => {
      release = resolve;
    });
    jwks = { keys: [k2.jwk] };
    const inflight = verifier.verify(forged);
    release();
    await inflight.catch(() => {});
    await new Promise((resolve) => setTimeout(resolve, 50));
    await assert.rejects(verifier.verify(forged), (e: TesseraError) => e.code === 'invalid_token', 'k1 is gone: refused, not served from the cache');
  });

  test('expiry follows the clock, with the 5 s tolerance', async () => {
    const verifier = verifierFor(`${t.url}/.well-known/jwks.json`);
    const { pair: fresh } = await signUp(t);
    t.clock.advance(15 * 60 + 4);
    await verifier.verify(fresh.access_token);
    t.clock.advance(2);
    await assert.rejects(verifier.verify(fresh.access_token), (e: TesseraError) => e.code === 'token_expired');
  });

  test('options that cannot be right throw TypeError at construction', () => {
    const base = { issuer, audience: 'a', jwksUri: 'http://x/jwks.json' };
    assert.throws(() => createVerifier({ ...base, issuer: '' }), TypeError);
    assert.throws(() => createVerifier({ ...base, jwksUri: 'not a url' }), TypeError);
    assert.throws(() => createVerifier({ ...base, algorithms: ['HS256' as 'RS256'] }), /HS256 is not allowed/);
    assert.throws(() => createVerifier({ ...base, algorithms: ['none' as 'RS256'] }), TypeError);
    assert.throws(() => createVerifier({ ...base, algorithms: [] }), TypeError);
    assert.throws(() => createVerifier({ ...base, clockTolerance: 3600 }), TypeError);
  });

  test('an algorithm outside the allow-list is refused even with a known key', async () => {
    const verifier = verifierFor(`${t.url}/.well-known/jwks.json`, { algorithms: ['ES256'] });
    await assert.rejects(verifier.verify(pair.access_token), (e: TesseraError) => e.code === 'invalid_token');
  });

  test('keys are fetched once; an unknown kid refetches at most once per cooldown', async () => {
    const proxy = await startJwksProxy(`${t.url}/.well-known/jwks.json`);
    try {
      const verifier = verifierFor(proxy.url, { jwksCooldown: 30 });
      const { pair: fresh } = await signUp(t);
      await Promise.all(Array.from({ length: 10 }, () => verifier.verify(fresh.access_token)));
      assert.equal(proxy.state.fetches, 1, 'ten concurrent first requests share one fetch');
      const unknown = table.find((b) => b.name === 'unknown kid')!;
      for (let i = 0; i < 5; i++) await assert.rejects(verifier.verify(unknown.token));
      assert.equal(proxy.state.fetches, 1, 'within the cooldown: no refetch');
      t.clock.advance(31);
      await assert.rejects(verifier.verify(unknown.token));
      await assert.rejects(verifier.verify(unknown.token));
      assert.equal(proxy.state.fetches, 2, 'after the cooldown: exactly one refetch');
    } finally {
      await proxy.close();
    }
  });

  test('a JWKS outage keeps serving known keys (stale-if-error) and refuses unknown ones', async () => {
    const proxy = await startJwksProxy(`${t.url}/.well-known/jwks.json`);
    try {
      const verifier = verifierFor(proxy.url, { jwksCooldown: 0 });
      const { pair: fresh } = await signUp(t);
      await verifier.verify(fresh.access_token);
      proxy.state.down = true;
      t.clock.advance(400); // past max-age: the cache is stale and a refetch fails
      await verifier.verify(fresh.access_token);
      await new Promise((resolve) => setTimeout(resolve, 20));
      await verifier.verify(fresh.access_token);
      assert.ok(proxy.state.fetches >= 2, 'it did try to refetch');
      const unknown = table.find((b) => b.name === 'unknown kid')!;
      await assert.rejects(verifier.verify(unknown.token), (e: TesseraError) => e.code === 'invalid_token');
    } finally {
      await proxy.close();
    }
  });

  test('a JWKS that never answered leaves every token refused, and recovers when it comes back', async () => {
    const proxy = await startJwksProxy(`${t.url}/.well-known/jwks.json`);
    try {
      proxy.state.down = true;
      const verifier = verifierFor(proxy.url, { jwksCooldown: 1 });
      await assert.rejects(verifier.verify(pair.access_token), (e: TesseraError) => e.code === 'invalid_token');
      proxy.state.down = false;
      t.clock.advance(2);
      const { pair: fresh } = await signUp(t);
      await verifier.verify(fresh.access_token);
    } finally {
      await proxy.close();
    }
  });

  test('the JWKS Cache-Control max-age is honoured', async () => {
    const proxy = await startJwksProxy(`${t.url}/.well-known/jwks.json`);
    try {
      proxy.state.cacheControl = 'max-age=60';
      const verifier = verifierFor(proxy.url);
      const { pair: fresh } = await signUp(t);
      await verifier.verify(fresh.access_token);
      t.clock.advance(59);
      await verifier.verify(fresh.access_token);
      assert.equal(proxy.state.fetches, 1, 'fresh within max-age');
      t.clock.advance(2);
      await verifier.verify(fresh.access_token);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(proxy.state.fetches, 2, 'refetched in the background once stale');
    } finally {
      await proxy.close();
    }
  });

  test('a new key published in the JWKS is picked up on first sight of its kid (rotation without a 401)', async () => {
    const next = await extraKey('next-key');
    const proxy = await startJwksProxy(`${t.url}/.well-known/jwks.json`);
    try {
      const verifier = verifierFor(proxy.url, { jwksCooldown: 0 });
      const { pair: fresh } = await signUp(t);
      await verifier.verify(fresh.access_token);
      proxy.state.extraKeys = [next.jwk];
      assert.equal((await verifier.verify(await accessToken(next, issuer, t.clock.now(), 60))).sub, 'u');
      await verifier.verify(fresh.access_token);
    } finally {
      await proxy.close();
    }
  });
});

describe('the verified-token cache (opt-in)', () => {
  let t: TestServer;
  const issuer = 'http://localhost:4000';
  before(async () => {
    t = await startTestServer({ issuer, feedHeartbeat: 1 });
  });
  after(() => t.close());
  const jwksUri = () => `${t.url}/.well-known/jwks.json`;

  test('a hit is the same frozen claims object; an entry never outlives exp, not even by the tolerance', async () => {
    const verifier = createVerifier({ issuer, audience: 'tessera-api', jwksUri: jwksUri(), clock: t.clock.now, cache: true });
    const { pair } = await signUp(t);
    const first = await verifier.verify(pair.access_token);
    assert.ok(Object.isFrozen(first) && Object.isFrozen(first.roles));
    assert.equal(await verifier.verify(pair.access_token), first, 'served from the cache');
    t.clock.advance(first.exp - Math.floor(t.clock.now() / 1000) - 1);
    assert.equal(await verifier.verify(pair.access_token), first, 'one second before exp: still a hit');
    t.clock.advance(2);
    const late = await verifier.verify(pair.access_token);
    assert.notEqual(late, first, 'past exp the entry is gone; within the 5 s tolerance the token is checked again');
    assert.equal(late.jti, first.jti);
    t.clock.advance(5);
    await assert.rejects(verifier.verify(pair.access_token), (e: TesseraError) => e.code === 'token_expired');
  });

  test('the cache is bounded: beyond its size the oldest entry makes room', async () => {
    const verifier = createVerifier({ issuer, audience: 'tessera-api', jwksUri: jwksUri(), clock: t.clock.now, cache: 2 });
    const tokens = [(await signUp(t)).pair, (await signUp(t)).pair, (await signUp(t)).pair].map((p) => p.access_token);
    const a = await verifier.verify(tokens[0]!);
    await verifier.verify(tokens[1]!);
    assert.equal(await verifier.verify(tokens[0]!), a);
    await verifier.verify(tokens[2]!);
    assert.notEqual(await verifier.verify(tokens[0]!), a, 'the oldest entry was evicted');
    assert.throws(() => createVerifier({ issuer, audience: 'a', jwksUri: jwksUri(), cache: -1 }), TypeError);
    assert.throws(() => createVerifier({ issuer, audience: 'a', jwksUri: jwksUri(), cache: 1.5 }), TypeError);
  });

  test('a cached token of a revoked session is refused: the revocation check runs on every hit', async () => {
    const verifier = createVerifier({ issuer, audience: 'tessera-api', jwksUri: jwksUri(), clock: t.clock.now, cache: true, revocation: { url: `${t.url}/auth/revocations` } });
    try {
      await verifier.prefetch();
      const { pair } = await signUp(t);
      await verifier.verify(pair.access_token);
      await verifier.verify(pair.access_token);
      await t.call('POST', '/auth/logout', { token: pair.access_token });
      const started = Date.now();
      let code: string | undefined;
      while (!code && Date.now() - started < 1000) {
        code = await verifier.verify(pair.access_token).then(() => undefined, (e: TesseraError) => e.code);
        if (!code) await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.equal(code, 'token_revoked');
    } finally {
      verifier.close();
    }
  });

  test('a key leaving the JWKS clears the cache: its tokens are refused at the next refetch', async () => {
    const leaving = await extraKey('leaving-key');
    const proxy = await startJwksProxy(jwksUri());
    try {
      proxy.state.cacheControl = 'max-age=30';
      proxy.state.extraKeys = [leaving.jwk];
      const verifier = createVerifier({ issuer, audience: 'tessera-api', jwksUri: proxy.url, clock: t.clock.now, cache: true, jwksCooldown: 0 });
      const token = await accessToken(leaving, issuer, t.clock.now(), 600);
      const { pair } = await signUp(t);
      await verifier.verify(token);
      await verifier.verify(pair.access_token);
      proxy.state.extraKeys = []; // e.g. `tessera keys retire leaving-key`
      t.clock.advance(31);
      await verifier.verify(token); // stale-while-revalidate: this one starts the refetch
      await new Promise((resolve) => setTimeout(resolve, 50));
      await assert.rejects(verifier.verify(token), (e: TesseraError) => e.code === 'invalid_token');
      await verifier.verify(pair.access_token);
    } finally {
      await proxy.close();
    }
  });
});

describe('revocation through the feed', () => {
  let t: TestServer;
  const issuer = 'http://localhost:4000';
  before(async () => {
    t = await startTestServer({ issuer, feedHeartbeat: 1 });
  });
  after(() => t.close());

  test('a logout is refused by the verifier within a second, with no database of its own', async () => {
    const verifier = createVerifier({
      issuer,
      audience: 'tessera-api',
      jwksUri: `${t.url}/.well-known/jwks.json`,
      revocation: { url: `${t.url}/auth/revocations` },
      clock: t.clock.now,
    });
    try {
      await verifier.prefetch();
      const { pair } = await signUp(t);
      await verifier.verify(pair.access_token);
      const loggedOut = Date.now();
      await t.call('POST', '/auth/logout', { token: pair.access_token });
      let code: string | undefined;
      while (Date.now() - loggedOut < 1000) {
        code = await verifier.verify(pair.access_token).then(() => undefined, (e: TesseraError) => e.code);
        if (code) break;
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      assert.equal(code, 'token_revoked', 'refused within 1 s of the logout');
      const { pair: other } = await signUp(t);
      await verifier.verify(other.access_token);
    } finally {
      verifier.close();
    }
  });

  test('a revocation made while the verifier was away is caught up (catch-up on connect)', async () => {
    const { pair } = await signUp(t);
    await t.call('POST', '/auth/logout', { token: pair.access_token });
    const verifier = createVerifier({ issuer, audience: 'tessera-api', jwksUri: `${t.url}/.well-known/jwks.json`, revocation: { url: `${t.url}/auth/revocations` }, clock: t.clock.now });
    try {
      await verifier.prefetch();
      await new Promise((resolve) => setTimeout(resolve, 50));
      await assert.rejects(verifier.verify(pair.access_token), (e: TesseraError) => e.code === 'token_revoked');
    } finally {
      verifier.close();
    }
  });

  test('every duration option is in seconds; a millisecond-sized value is refused, naming the unit', () => {
    const base = { issuer, audience: 'tessera-api', jwksUri: `${t.url}/.well-known/jwks.json` };
    assert.throws(() => createVerifier({ ...base, jwksTimeout: 5000 }), /jwksTimeout is in seconds.*milliseconds\?/);
    assert.throws(() => createVerifier({ ...base, revocation: { pollInterval: 1000 } }), /pollInterval is in seconds.*milliseconds\?/);
    assert.throws(() => createVerifier({ ...base, revocation: { pollInterval: 0.01 } }), /pollInterval is in seconds, 0\.1 to 300/);
    createVerifier({ ...base, jwksTimeout: 2.5, revocation: { pollInterval: 0.5 } }).close();
  });

  test('prefetch rejects when the feed does not answer within jwksTimeout', async () => {
    const verifier = createVerifier({ issuer, audience: 'tessera-api', jwksUri: `${t.url}/.well-known/jwks.json`, revocation: { url: 'http://127.0.0.1:9/auth/revocations' }, jwksTimeout: 0.3 });
    try {
      await assert.rejects(verifier.prefetch(), /revocation feed did not answer/);
    } finally {
      verifier.close();
    }
  });

  test('a dead feed fails closed by default after maxStaleness, or serves until exp with whenStale: accept', async () => {
    const { pair } = await signUp(t);
    const dead = 'http://127.0.0.1:9/auth/revocations';
    const closed = createVerifier({ issuer, audience: 'tessera-api', jwksUri: `${t.url}/.well-known/jwks.json`, revocation: { url: dead, maxStaleness: 30 }, clock: t.clock.now });
    const open = createVerifier({ issuer, audience: 'tessera-api', jwksUri: `${t.url}/.well-known/jwks.json`, revocation: { url: dead, maxStaleness: 30, whenStale: 'accept' }, clock: t.clock.now });
    try {
      await closed.verify(pair.access_token); // within the start-up allowance
      t.clock.advance(31);
      await assert.rejects(closed.verify(pair.access_token), (e: TesseraError) => e.code === 'token_revoked' && /feed is down/.test(e.message));
      await open.verify(pair.access_token);
    } finally {
      closed.close();
      open.close();
    }
  });
});

test('on Node the package picks the fast-jwt engine; a bundle for other runtimes gets jose only', async () => {
  const verifier = createVerifier({ issuer: 'http://localhost:4000', audience: 'a', jwksUri: 'http://127.0.0.1:9/jwks.json' });
  assert.equal(verifier.engine, 'fast-jwt');
  const { build } = await import('esbuild');
  const { fileURLToPath } = await import('node:url');
  const bundle = await build({
    entryPoints: [fileURLToPath(new URL('../dist/index.js', import.meta.url))],
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    conditions: ['worker', 'browser'],
    logLevel: 'silent',
  });
  const code = bundle.outputFiles[0]!.text;
  assert.doesNotMatch(code, /fast-jwt|node:crypto|createPublicKey/);
  assert.match(code, /jwtVerify/);
});
