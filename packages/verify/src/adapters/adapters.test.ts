import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, request, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { serve } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { type BadToken, badTokens, startTripwire, type Tripwire } from '../../../../test/support/bad_tokens.js';
import { signUp, startTestServer, type TestServer } from '../../../../test/support/test_server.js';
import { createVerifier, type Verifier } from '../create_verifier.js';
import { accessTokenHash } from '../dpop_proof.js';
import * as expressAdapter from './express.js';
import { tesseraAuth } from './fastify.js';
import * as honoAdapter from './hono.js';
import { authenticate } from './node_http.js';

/**
 * Each adapter serves GET /profile (any valid token), GET /admin (role admin) and
 * GET /v1/profile (from a router, sub-app or prefixed plugin mounted at /v1) on a free port.
 */
type StartApp = (verifier: Verifier, options?: { publicUrl?: string }) => Promise<{ url: string; close(): Promise<void> }>;

const listen = async (server: Server) => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
};

const ADAPTERS: Record<string, StartApp> = {
  express: async (verifier, options) => {
    const app = express();
    const profile = (req: express.Request, res: express.Response) => {
      res.json({ user: req.auth!.username });
    };
    app.get('/profile', expressAdapter.requireAuth(verifier, options), profile);
    app.get('/admin', expressAdapter.requireAuth(verifier, options), expressAdapter.requireRole('admin'), (_req, res) => {
      res.json({ admin: true });
    });
    const router = express.Router();
    router.get('/profile', expressAdapter.requireAuth(verifier, options), profile);
    app.use('/v1', router);
    return listen(createServer(app));
  },
  fastify: async (verifier, options) => {
    const app = Fastify();
    await app.register(tesseraAuth, { verifier, ...options });
    app.get('/profile', { preHandler: app.tessera.requireAuth }, async (request) => ({ user: request.auth!.username }));
    app.get('/admin', { preHandler: [app.tessera.requireAuth, app.tessera.requireRole('admin')] }, async () => ({ admin: true }));
    await app.register(
      async (v1) => {
        v1.get('/profile', { preHandler: app.tessera.requireAuth }, async (request) => ({ user: request.auth!.username }));
      },
      { prefix: '/v1' },
    );
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    return { url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`, close: () => app.close() };
  },
  hono: async (verifier, options) => {
    const app = new Hono<{ Variables: honoAdapter.TesseraVariables }>();
    app.get('/profile', honoAdapter.requireAuth(verifier, options), (c) => c.json({ user: c.get('auth').username }));
    app.get('/admin', honoAdapter.requireAuth(verifier, options), honoAdapter.requireRole('admin'), (c) => c.json({ admin: true }));
    const v1 = new Hono<{ Variables: honoAdapter.TesseraVariables }>();
    v1.get('/profile', honoAdapter.requireAuth(verifier, options), (c) => c.json({ user: c.get('auth').username }));
    app.route('/v1', v1);
    const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
    });
    const address = server.address();
    return {
      url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  },
  'node:http': async (verifier, options) =>
    listen(
      createServer(async (req, res) => {
        const admin = req.url === '/admin';
        const auth = await authenticate(verifier, req, res, { ...options, ...(admin ? { role: 'admin' } : {}) });
        if (!auth) return;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(admin ? { admin: true } : { user: auth.username }));
      }),
    ),
};

/** A 401 to a Bearer request: the error in the Bearer challenge, DPoP offered (RFC 9449 §7.2). */
const BEARER_CHALLENGE = /^Bearer error="invalid_token", error_description="[^"]+", DPoP algs="ES256 EdDSA"$/;
/** A refusal of a DPoP request: the error in the DPoP challenge, with algs (RFC 9449 §7.1), Bearer offered. */
const DPOP_CHALLENGE = (error: string) => new RegExp(`^DPoP error="${error}", error_description="[^"]+", algs="ES256 EdDSA", Bearer$`);

/** A request with any headers, repeated ones included (an array is sent as one header line per value). */
type Body = { error?: string; message?: string; user?: string; admin?: boolean };
function call(url: string, headers: Record<string, string | string[]> = {}): Promise<{ status: number; headers: IncomingHttpHeaders; body: Body }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? (JSON.parse(text) as Body) : {} }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** A client's DPoP key (what @tessera/client keeps in IndexedDB). */
async function clientKey(alg: 'ES256' | 'EdDSA' = 'ES256') {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { alg, privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) };
}
type ClientKey = Awaited<ReturnType<typeof clientKey>>;

describe('framework adapters', () => {
  let t: TestServer;
  let tripwire: Tripwire;
  let table: BadToken[];
  let user: Awaited<ReturnType<typeof signUp>>;
  let adminToken: string;
  const issuer = 'http://localhost:4000';

  before(async () => {
    t = await startTestServer({ issuer });
    user = await signUp(t);
    tripwire = await startTripwire();
    table = await badTokens(t, user.pair, tripwire.url);
    const admin = await signUp(t);
    await t.server.context.store.db.query("UPDATE users SET roles = '{admin}' WHERE id = $1", [admin.userId]);
    adminToken = (await t.call('POST', '/auth/refresh', { token: admin.pair.refresh_token })).body.access_token;
  });
  after(async () => {
    await t.close();
    await tripwire.close();
  });

  /** An access token like `source` (a genuine one), signed by the auth server's key, bound to `key`. */
  async function boundTo(key: ClientKey, source: string): Promise<string> {
    const signer = t.server.context.keys.signer;
    return new SignJWT({ ...decodeJwt(source), jti: crypto.randomUUID(), cnf: { jkt: key.jkt } })
      .setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ: 'at+jwt' })
      .sign(signer.key);
  }

  /** A DPoP proof for GET `htu` with `token`, by `key`, issued now by the test clock (or as `claims` say). */
  async function proofFor(key: ClientKey, htu: string, token: string | undefined, claims: Record<string, unknown> = {}): Promise<string> {
    return new SignJWT({
      jti: crypto.randomUUID(),
      htm: 'GET',
      htu,
      iat: Math.floor(t.clock.now() / 1000),
      ...(token === undefined ? {} : { ath: await accessTokenHash(token) }),
      ...claims,
    })
      .setProtectedHeader({ alg: key.alg, typ: 'dpop+jwt', jwk: key.jwk })
      .sign(key.privateKey);
  }

  for (const [name, start] of Object.entries(ADAPTERS)) {
    describe(name, () => {
      let app: Awaited<ReturnType<StartApp>>;
      let proxied: Awaited<ReturnType<StartApp>>;
      before(async () => {
        const verifier = createVerifier({ issuer, audience: 'tessera-api', jwksUri: `${t.url}/.well-known/jwks.json`, clock: t.clock.now });
        app = await start(verifier);
        proxied = await start(verifier, { publicUrl: 'https://api.example.test/base/' });
      });
      after(async () => {
        await app.close();
        await proxied.close();
      });
      const get = (path: string, authorization?: string) =>
        fetch(app.url + path, { headers: authorization === undefined ? {} : { authorization } });

      test('a valid token reaches the handler with its claims', async () => {
        const res = await get('/profile', `Bearer ${user.pair.access_token}`);
        assert.equal(res.status, 200);
        assert.deepEqual(await res.json(), { user: user.username });
      });

      test('every bad token: 401, its code, and WWW-Authenticate: Bearer error="invalid_token", error_description', async () => {
        for (const bad of table) {
          const res = await get('/profile', `Bearer ${bad.token}`);
          assert.equal(res.status, 401, bad.name);
          const body = await res.json();
          assert.equal(body.error, bad.code, bad.name);
          assert.equal(typeof body.message, 'string');
          assert.match(res.headers.get('www-authenticate') ?? '', BEARER_CHALLENGE, bad.name);
        }
        assert.equal(tripwire.hits, 0);
      });

      test('the header must be exactly "Bearer <token>" or "DPoP <token>"; no header is 401 too, offering both schemes', async () => {
        for (const header of [undefined, 'Bearer', 'DPoP', `Bearer  ${user.pair.access_token}`, `Basic ${user.pair.access_token}`, `Bearer ${user.pair.access_token} x`]) {
          const res = await get('/profile', header);
          assert.equal(res.status, 401, String(header).slice(0, 10));
          assert.equal((await res.json()).error, 'invalid_token');
          assert.match(res.headers.get('www-authenticate') ?? '', header?.startsWith('DPoP') ? DPOP_CHALLENGE('invalid_token') : BEARER_CHALLENGE);
        }
      });

      test('DPoP: a bound token with a proof of this request by its key reaches the handler (ES256, EdDSA; query ignored; mounted at /v1)', async () => {
        for (const alg of ['ES256', 'EdDSA'] as const) {
          const key = await clientKey(alg);
          const token = await boundTo(key, user.pair.access_token);
          const res = await call(`${app.url}/profile?page=2`, { authorization: `DPoP ${token}`, dpop: await proofFor(key, `${app.url}/profile`, token) });
          assert.equal(res.status, 200, JSON.stringify(res.body));
          assert.deepEqual(res.body, { user: user.username });
        }
        const key = await clientKey();
        const token = await boundTo(key, user.pair.access_token);
        const mounted = await call(`${app.url}/v1/profile`, { authorization: `DPoP ${token}`, dpop: await proofFor(key, `${app.url}/v1/profile`, token) });
        assert.equal(mounted.status, 200, 'the full path, not the one relative to the router');
        const inner = await call(`${app.url}/v1/profile`, { authorization: `DPoP ${token}`, dpop: await proofFor(key, `${app.url}/profile`, token) });
        assert.equal(inner.status, 401);
        assert.equal(inner.body.error, 'invalid_dpop_proof');
      });

      test('DPoP: requireRole answers with the DPoP challenge: 403 without the role, 200 with it', async () => {
        const key = await clientKey();
        const plain = await boundTo(key, user.pair.access_token);
        const denied = await call(`${app.url}/admin`, { authorization: `DPoP ${plain}`, dpop: await proofFor(key, `${app.url}/admin`, plain) });
        assert.equal(denied.status, 403);
        assert.equal(denied.body.error, 'insufficient_scope');
        assert.match(denied.headers['www-authenticate'] ?? '', DPOP_CHALLENGE('insufficient_scope'));
        const admin = await boundTo(key, adminToken);
        const allowed = await call(`${app.url}/admin`, { authorization: `DPoP ${admin}`, dpop: await proofFor(key, `${app.url}/admin`, admin) });
        assert.equal(allowed.status, 200);
      });

      test('DPoP: a bound token as Bearer is 401 invalid_token, with or without a proof; an unbound token still works as Bearer, not as DPoP', async () => {
        const key = await clientKey();
        const token = await boundTo(key, user.pair.access_token);
        const variants: Record<string, string>[] = [{ authorization: `Bearer ${token}` }, { authorization: `Bearer ${token}`, dpop: await proofFor(key, `${app.url}/profile`, token) }];
        for (const headers of variants) {
          const res = await call(`${app.url}/profile`, headers);
          assert.equal(res.status, 401);
          assert.equal(res.body.error, 'invalid_token');
          assert.match(res.body.message ?? '', /bound to a key/);
          assert.match(res.headers['www-authenticate'] ?? '', BEARER_CHALLENGE);
        }
        const unbound = user.pair.access_token;
        assert.equal((await call(`${app.url}/profile`, { authorization: `Bearer ${unbound}` })).status, 200);
        const asDpop = await call(`${app.url}/profile`, { authorization: `DPoP ${unbound}`, dpop: await proofFor(key, `${app.url}/profile`, unbound) });
        assert.equal(asDpop.status, 401);
        assert.equal(asDpop.body.error, 'invalid_token');
        assert.match(asDpop.headers['www-authenticate'] ?? '', DPOP_CHALLENGE('invalid_token'));
      });

      test('DPoP: 401 invalid_dpop_proof for a missing proof, wrong key, wrong ath, wrong htm, wrong htu, stale iat, a replay, two DPoP headers', async () => {
        const key = await clientKey();
        const other = await clientKey();
        const token = await boundTo(key, user.pair.access_token);
        const sibling = await boundTo(key, user.pair.access_token);
        const url = `${app.url}/profile`;
        const port = new URL(app.url).port;
        const replayed = await proofFor(key, url, token);
        assert.equal((await call(url, { authorization: `DPoP ${token}`, dpop: replayed })).status, 200);
        const cases: [string, string | string[] | undefined, RegExp][] = [
          ['missing proof', undefined, /no DPoP header/],
          ['wrong key', await proofFor(other, url, token), /another key/],
          ['wrong ath (another token of the same key)', await proofFor(key, url, sibling), /ath/],
          ['no ath', await proofFor(key, url, undefined), /ath/],
          ['wrong htm', await proofFor(key, url, token, { htm: 'POST' }), /htm/],
          ['wrong htu path', await proofFor(key, `${app.url}/admin`, token), /htu/],
          ['wrong htu host', await proofFor(key, `http://localhost:${port}/profile`, token), /htu/],
          ['wrong htu scheme', await proofFor(key, `https://127.0.0.1:${port}/profile`, token), /htu/],
          ['stale iat', await proofFor(key, url, token, { iat: Math.floor(t.clock.now() / 1000) - 61 }), /iat/],
          ['replayed', replayed, /replay/],
          ['two DPoP headers', [await proofFor(key, url, token), await proofFor(key, url, token)], /more than one DPoP header/],
        ];
        for (const [what, dpop, why] of cases) {
          const res = await call(url, { authorization: `DPoP ${token}`, ...(dpop === undefined ? {} : { dpop }) });
          assert.equal(res.status, 401, what);
          assert.equal(res.body.error, 'invalid_dpop_proof', what);
          assert.match(res.body.message ?? '', why, what);
          assert.match(res.headers['www-authenticate'] ?? '', DPOP_CHALLENGE('invalid_dpop_proof'), what);
        }
      });

      test('two Authorization headers are refused', async () => {
        const res = await call(`${app.url}/profile`, { authorization: [`Bearer ${user.pair.access_token}`, `Bearer ${user.pair.access_token}`] });
        if (name === 'hono') {
          // Fetch's Headers join them into one value, which does not parse.
          assert.equal(res.status, 401);
          assert.equal(res.body.error, 'invalid_token');
        } else {
          assert.equal(res.status, 400);
          assert.equal(res.body.error, 'invalid_request');
          assert.match(res.headers['www-authenticate'] ?? '', /^Bearer error="invalid_request", .*DPoP algs="ES256 EdDSA", error="invalid_request"/);
        }
      });

      test('publicUrl: proofs must name the URL clients use (here behind a proxy that strips /base), not the one this process sees', async () => {
        const key = await clientKey();
        const token = await boundTo(key, user.pair.access_token);
        const ok = await call(`${proxied.url}/profile`, { authorization: `DPoP ${token}`, dpop: await proofFor(key, 'https://api.example.test/base/profile', token) });
        assert.equal(ok.status, 200, JSON.stringify(ok.body));
        for (const htu of [`${proxied.url}/profile`, 'https://api.example.test/profile', 'http://api.example.test/base/profile']) {
          const res = await call(`${proxied.url}/profile`, { authorization: `DPoP ${token}`, dpop: await proofFor(key, htu, token) });
          assert.equal(res.status, 401, htu);
          assert.match(res.body.message ?? '', /htu/, htu);
        }
        // A forged Host header changes nothing once publicUrl is set.
        const forged = await call(`${proxied.url}/profile`, { host: 'evil.example', authorization: `DPoP ${token}`, dpop: await proofFor(key, 'http://evil.example/profile', token) });
        assert.equal(forged.status, 401);
        assert.equal((await call(`${proxied.url}/profile`, { authorization: `Bearer ${user.pair.access_token}` })).status, 200);
      });

      test('requireRole: 403 insufficient_scope without the role, 200 with it', async () => {
        const denied = await get('/admin', `Bearer ${user.pair.access_token}`);
        assert.equal(denied.status, 403);
        assert.equal((await denied.json()).error, 'insufficient_scope');
        assert.match(denied.headers.get('www-authenticate') ?? '', /^Bearer error="insufficient_scope"/);
        const allowed = await get('/admin', `Bearer ${adminToken}`);
        assert.equal(allowed.status, 200);
        assert.equal((await get('/admin')).status, 401, 'no token is 401, not 403');
      });
    });
  }
});
