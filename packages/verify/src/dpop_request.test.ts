import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TesseraError } from '@tessera/protocol';
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { errorResponse, parseAuthorization } from './bearer.js';
import { createVerifierWith, type RequestCredentials, type VerifierOptions } from './create_verifier.js';
import { accessTokenHash, type DpopReplayCache, memoryReplayCache } from './dpop_proof.js';
import { joseEngine } from './jose_key_verifier.js';
import { nodeEngine } from './node_key_verifier.js';
import { headerValues, parsePublicUrl, requestUrl } from './request_url.js';

const ISSUER = 'https://auth.example.test';
const URL_ = 'https://api.example.test/orders';
const START = Date.UTC(2030, 0, 1, 12);

/** The auth server's signing key, served as a JWKS through the verifier's `fetch`. */
const server = await (async () => {
  const { privateKey, publicKey } = await generateKeyPair('ES256', { extractable: true });
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' } as JWK;
  const fetch = (async () => new Response(JSON.stringify({ keys: [jwk] }), { headers: { 'cache-control': 'max-age=300' } })) as typeof globalThis.fetch;
  return { privateKey, fetch };
})();

/** A client's DPoP key. */
async function clientKey(alg: 'ES256' | 'EdDSA' = 'ES256') {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { alg, privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) };
}
type ClientKey = Awaited<ReturnType<typeof clientKey>>;

function accessToken(nowMs: number, claims: Record<string, unknown> = {}): Promise<string> {
  const now = Math.floor(nowMs / 1000);
  return new SignJWT({ sub: 'u1', sid: 's1', jti: crypto.randomUUID(), username: 'ann', roles: ['admin'], ...claims })
    .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'at+jwt' })
    .setIssuer(ISSUER)
    .setAudience('tessera-api')
    .setIssuedAt(now)
    .setExpirationTime(now + 900)
    .sign(server.privateKey);
}

async function proof(key: ClientKey, nowMs: number, token: string | undefined, claims: Record<string, unknown> = {}): Promise<string> {
  return new SignJWT({
    jti: crypto.randomUUID(),
    htm: 'GET',
    htu: URL_,
    iat: Math.floor(nowMs / 1000),
    ...(token === undefined ? {} : { ath: await accessTokenHash(token) }),
    ...claims,
  })
    .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.jwk })
    .sign(key.privateKey);
}

function setup(engine = nodeEngine, extra: Partial<VerifierOptions> = {}) {
  const clock = { now: START };
  const verifier = createVerifierWith(engine, {
    issuer: ISSUER,
    audience: 'tessera-api',
    jwksUri: `${ISSUER}/.well-known/jwks.json`,
    fetch: server.fetch,
    clock: () => clock.now,
    ...extra,
  });
  const request = (authorization: RequestCredentials['authorization'], dpop?: RequestCredentials['dpop'], more: Partial<RequestCredentials> = {}) =>
    verifier.verifyRequest({ authorization, dpop, method: 'GET', url: `${URL_}?page=2`, ...more });
  return { verifier, clock, request };
}

async function refused(promise: Promise<unknown>, code: string, why?: RegExp): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof TesseraError, String(e));
    assert.equal(e.code, code, e.message);
    if (why) assert.match(e.message, why);
    return true;
  });
}

for (const engine of [nodeEngine, joseEngine]) {
  describe(`verifyRequest, ${engine.name} engine`, () => {
    test('a bound token as DPoP with a proof of this request by its key: the claims, cnf included (ES256 and EdDSA keys)', async () => {
      const { request } = setup(engine);
      for (const alg of ['ES256', 'EdDSA'] as const) {
        const key = await clientKey(alg);
        const token = await accessToken(START, { cnf: { jkt: key.jkt } });
        const claims = await request(`DPoP ${token}`, await proof(key, START, token));
        assert.deepEqual(claims.cnf, { jkt: key.jkt });
        assert.equal(claims.username, 'ann');
        // The scheme name is case-insensitive; the htu's query is not compared.
        await request(`dpop ${token}`, await proof(key, START, token, { htu: `${URL_}?other=1` }));
      }
    });

    test('a bound token without its proof is refused everywhere: verify(token), Bearer (even with a valid proof)', async () => {
      const { verifier, request } = setup(engine);
      const key = await clientKey();
      const token = await accessToken(START, { cnf: { jkt: key.jkt } });
      await refused(verifier.verify(token), 'invalid_token', /bound to a key/);
      await refused(request(`Bearer ${token}`), 'invalid_token', /bound to a key/);
      await refused(request(`Bearer ${token}`, await proof(key, START, token)), 'invalid_token', /bound to a key/);
    });

    test('an unbound token works as Bearer (with or without a DPoP header) and through verify(token), but not as DPoP', async () => {
      const { verifier, request } = setup(engine);
      const key = await clientKey();
      const token = await accessToken(START);
      assert.equal((await verifier.verify(token)).sub, 'u1');
      assert.equal((await request(`Bearer ${token}`)).sub, 'u1');
      assert.equal((await request(`Bearer ${token}`, 'ignored.for.bearer')).sub, 'u1');
      await refused(request(`DPoP ${token}`, await proof(key, START, token)), 'invalid_token', /not bound to a key/);
    });
  });
}

describe('verifyRequest: every bad proof is invalid_dpop_proof', () => {
  test('missing, wrong key, wrong ath, wrong htm, wrong htu, stale or future iat, replayed, repeated header, unknown URL', async () => {
    const { request } = setup();
    const key = await clientKey();
    const other = await clientKey();
    const token = await accessToken(START, { cnf: { jkt: key.jkt } });
    const otherToken = await accessToken(START, { cnf: { jkt: key.jkt } });
    const good = () => proof(key, START, token);
    await refused(request(`DPoP ${token}`), 'invalid_dpop_proof', /no DPoP header/);
    await refused(request(`DPoP ${token}`, ''), 'invalid_dpop_proof', /no DPoP header/);
    await refused(request(`DPoP ${token}`, await proof(other, START, token)), 'invalid_dpop_proof', /another key/);
    await refused(request(`DPoP ${token}`, await proof(key, START, otherToken)), 'invalid_dpop_proof', /ath/);
    await refused(request(`DPoP ${token}`, await proof(key, START, undefined)), 'invalid_dpop_proof', /ath/);
    await refused(request(`DPoP ${token}`, await proof(key, START, token, { htm: 'POST' })), 'invalid_dpop_proof', /htm/);
    await refused(request(`DPoP ${token}`, await good(), { method: 'POST' }), 'invalid_dpop_proof', /htm/);
    await refused(request(`DPoP ${token}`, await proof(key, START, token, { htu: 'https://api.example.test/admin' })), 'invalid_dpop_proof', /htu/);
    await refused(request(`DPoP ${token}`, await proof(key, START, token, { htu: 'https://other.example.test/orders' })), 'invalid_dpop_proof', /htu/);
    await refused(request(`DPoP ${token}`, await proof(key, START, token, { htu: 'http://api.example.test/orders' })), 'invalid_dpop_proof', /htu/);
    await refused(request(`DPoP ${token}`, await proof(key, START - 61_000, token)), 'invalid_dpop_proof', /iat/);
    await refused(request(`DPoP ${token}`, await proof(key, START + 61_000, token)), 'invalid_dpop_proof', /iat/);
    const once = await good();
    await request(`DPoP ${token}`, once);
    await refused(request(`DPoP ${token}`, once), 'invalid_dpop_proof', /replay/);
    const [a, b] = [await good(), await good()];
    await refused(request(`DPoP ${token}`, [a, b]), 'invalid_dpop_proof', /more than one DPoP header/);
    await refused(request(`DPoP ${token}`, `${a}, ${b}`), 'invalid_dpop_proof', /more than one DPoP header/);
    await refused(request(`DPoP ${token}`, await good(), { url: undefined }), 'invalid_dpop_proof', /URL/);
    // A header array of one is that header; the proofs refused above did not use up their jti.
    await request(`DPoP ${token}`, [a]);
    await request([`DPoP ${token}`], b);
  });

  test('the token is checked before the proof: an expired or forged bound token is the token’s failure', async () => {
    const { request, clock } = setup();
    const key = await clientKey();
    const token = await accessToken(START, { cnf: { jkt: key.jkt } });
    await refused(request(`DPoP ${token}x`, await proof(key, START, `${token}x`)), 'invalid_token');
    clock.now = START + 906_000;
    await refused(request(`DPoP ${token}`, await proof(key, clock.now, token)), 'token_expired');
  });

  test('the proof window follows the verifier’s clock: a proof is good for 60 s, then stale', async () => {
    const { request, clock } = setup();
    const key = await clientKey();
    const token = await accessToken(START, { cnf: { jkt: key.jkt } });
    const early = await proof(key, START, token);
    clock.now = START + 60_000;
    await request(`DPoP ${token}`, early);
    const late = await proof(key, START, token);
    clock.now = START + 61_000;
    await refused(request(`DPoP ${token}`, late), 'invalid_dpop_proof', /iat/);
  });

  test('with the verified-token cache on, a cached bound token still needs a fresh proof every time', async () => {
    const { verifier, request } = setup(nodeEngine, { cache: true });
    const key = await clientKey();
    const token = await accessToken(START, { cnf: { jkt: key.jkt } });
    const first = await request(`DPoP ${token}`, await proof(key, START, token));
    assert.ok(Object.isFrozen(first.cnf));
    assert.equal(await request(`DPoP ${token}`, await proof(key, START, token)), first, 'served from the cache');
    await refused(request(`DPoP ${token}`), 'invalid_dpop_proof');
    await refused(request(`Bearer ${token}`), 'invalid_token');
    await refused(verifier.verify(token), 'invalid_token');
  });

  test('a confirmation other than cnf.jkt, or a malformed one, is refused as invalid_token (never ignored)', async () => {
    const { verifier, request } = setup();
    const key = await clientKey();
    for (const cnf of [{ 'x5t#S256': 'abc' }, { jkt: key.jkt, 'x5t#S256': 'abc' }, { jkt: 5 }, { jkt: 'short' }, 'x', null, [key.jkt], {}]) {
      const token = await accessToken(START, { cnf });
      await refused(verifier.verify(token), 'invalid_token', undefined);
      await refused(request(`Bearer ${token}`), 'invalid_token');
      await refused(request(`DPoP ${token}`, await proof(key, START, token)), 'invalid_token');
    }
  });

  test('the Authorization header: one, "Bearer|DPoP <token>"; two are invalid_request', async () => {
    const { request } = setup();
    const token = await accessToken(START);
    for (const header of [undefined, null, '', 'DPoP', `Basic ${token}`, `DPoP  ${token}`, `Bearer ${token} x`]) {
      await refused(request(header), 'invalid_token');
    }
    await refused(request([`Bearer ${token}`, `DPoP ${token}`]), 'invalid_request', /More than one Authorization/);
    assert.deepEqual(parseAuthorization(`DpOp ${token}`), { scheme: 'DPoP', token });
  });
});

describe('the replay cache', () => {
  test('one per verifier by default; a shared one (dpop.replay) sees a proof replayed to another verifier', async () => {
    const key = await clientKey();
    const token = await accessToken(START, { cnf: { jkt: key.jkt } });
    const p = await proof(key, START, token);
    const a = setup();
    const b = setup();
    await a.request(`DPoP ${token}`, p);
    await b.request(`DPoP ${token}`, p); // another process's cache: not seen there
    const calls: string[] = [];
    const memory = memoryReplayCache();
    const shared: DpopReplayCache = {
      remember(k, ttl, now) {
        calls.push(k);
        return memory.remember(k, ttl, now);
      },
    };
    const c = setup(nodeEngine, { dpop: { replay: shared } });
    const d = setup(nodeEngine, { dpop: { replay: shared } });
    const q = await proof(key, START, token);
    await c.request(`DPoP ${token}`, q);
    await refused(d.request(`DPoP ${token}`, q), 'invalid_dpop_proof', /replay/);
    assert.equal(calls.length, 2);
    assert.equal(calls[0], calls[1]);
    assert.match(calls[0]!, /^[A-Za-z0-9_-]{22}$/, 'a fixed-size key, whatever the jti’s length');
  });

  test('a replay cache that fails fails the request, never admits it; bad options are a TypeError', async () => {
    const key = await clientKey();
    const token = await accessToken(START, { cnf: { jkt: key.jkt } });
    const broken = setup(nodeEngine, { dpop: { replay: { remember: () => Promise.reject(new Error('redis down')) } } });
    await assert.rejects(broken.request(`DPoP ${token}`, await proof(key, START, token)), /redis down/);
    const base = { issuer: ISSUER, audience: 'a', jwksUri: `${ISSUER}/jwks.json` };
    assert.throws(() => createVerifierWith(nodeEngine, { ...base, dpop: { replay: {} as DpopReplayCache } }), TypeError);
    assert.throws(() => createVerifierWith(nodeEngine, { ...base, dpop: 'yes' as never }), TypeError);
  });

  test('memoryReplayCache forgets expired jtis as new ones come, not only when full', async () => {
    const cache = memoryReplayCache(1000);
    assert.equal(await cache.remember('a', 1000, 0), true);
    assert.equal(await cache.remember('a', 1000, 999), false);
    assert.equal(await cache.remember('a', 1000, 1000), true, 'expired: accepted again (and moved to the back)');
    assert.equal(await cache.remember('b', 1000, 1500), true);
    assert.equal(await cache.remember('a', 1000, 1999), false, 'the renewed entry lives its full ttl');
    // 5,000 keys 1 ms apart with a 100 ms ttl: about 100 live at any time, not 1,000.
    for (let i = 0; i < 5000; i++) assert.equal(await cache.remember(`k${i}`, 100, 10_000 + i), true);
    assert.ok(cache.size <= 101, `size ${cache.size}`);
    assert.equal(await cache.remember('k4999', 100, 15_000), false, 'the latest are remembered');
  });
});

describe('challenges (RFC 9449 §7.1, §7.2)', () => {
  const challenge = (error: TesseraError, scheme?: 'Bearer' | 'DPoP') => errorResponse(error, scheme ? { scheme } : {}).headers['www-authenticate'];

  test('the scheme tried carries the error and comes first; the other is offered bare', () => {
    assert.equal(challenge(new TesseraError('invalid_token', 'Bad "token".')), 'Bearer error="invalid_token", error_description="Bad token.", DPoP algs="ES256 EdDSA"');
    assert.equal(challenge(new TesseraError('token_expired', 'Expired.'), 'DPoP'), 'DPoP error="invalid_token", error_description="Expired.", algs="ES256 EdDSA", Bearer');
    assert.equal(challenge(new TesseraError('invalid_dpop_proof', 'No proof.')), 'DPoP error="invalid_dpop_proof", error_description="No proof.", algs="ES256 EdDSA", Bearer');
    assert.equal(challenge(new TesseraError('insufficient_scope', 'Role.'), 'DPoP'), 'DPoP error="insufficient_scope", error_description="Role.", algs="ES256 EdDSA", Bearer');
    assert.equal(challenge(new TesseraError('insufficient_scope', 'Role.')), 'Bearer error="insufficient_scope", error_description="Role.", DPoP algs="ES256 EdDSA"');
    const twice = errorResponse(new TesseraError('invalid_request', 'Two.'));
    assert.equal(twice.status, 400);
    assert.equal(twice.headers['www-authenticate'], 'Bearer error="invalid_request", error_description="Two.", DPoP algs="ES256 EdDSA", error="invalid_request", error_description="Two."');
    assert.equal(errorResponse(new Error('boom')).headers['www-authenticate'], undefined);
    assert.equal(errorResponse(new Error('boom')).status, 500);
  });
});

describe('the request URL a proof must name', () => {
  test('from publicUrl (with the prefix a proxy strips) or from protocol and Host; the query dropped', () => {
    const api = parsePublicUrl('https://API.example.test', 'test');
    const prefixed = parsePublicUrl('https://example.test/api/', 'test');
    assert.equal(requestUrl(api, 'http', '10.0.0.5:8080', '/orders?page=2'), 'https://api.example.test/orders');
    assert.equal(requestUrl(prefixed, 'http', 'backend', '/orders'), 'https://example.test/api/orders');
    assert.equal(requestUrl(undefined, 'https', 'api.example.test:8443', '/orders?x#y'), 'https://api.example.test:8443/orders');
    assert.equal(requestUrl(undefined, 'http:', '[::1]:3000', '/a'), 'http://[::1]:3000/a');
    assert.equal(requestUrl(undefined, 'http', 'ignored', 'http://proxy.example.test/abs?q'), 'http://proxy.example.test/abs', 'absolute-form');
    for (const host of [undefined, '', 'evil.test/path', 'a b', 'host:port', 'x@y']) assert.equal(requestUrl(undefined, 'http', host, '/a'), undefined, String(host));
    assert.equal(requestUrl(undefined, 'ftp', 'h', '/a'), undefined);
    assert.equal(requestUrl(undefined, 'http', 'h', '*'), undefined);
    assert.equal(requestUrl(undefined, 'http', 'h', undefined), undefined);
    for (const bad of ['not a url', 'ftp://x', 'https://x/?q=1', 'https://x/#f', 'https://u:p@x/']) assert.throws(() => parsePublicUrl(bad, 'test'), TypeError, bad);
  });

  test('a header sent twice is seen in rawHeaders, though Node keeps only the first Authorization', () => {
    const headers = { authorization: 'Bearer a', dpop: 'p1, p2' };
    assert.deepEqual(headerValues(headers, ['Authorization', 'Bearer a', 'authorization', 'Bearer b'], 'authorization'), ['Bearer a', 'Bearer b']);
    assert.deepEqual(headerValues(headers, ['DPoP', 'p1', 'dpop', 'p2'], 'dpop'), ['p1', 'p2']);
    assert.equal(headerValues({ authorization: 'set by middleware' }, ['Host', 'x'], 'authorization'), 'set by middleware');
    assert.equal(headerValues(headers, undefined, 'authorization'), 'Bearer a');
  });
});
