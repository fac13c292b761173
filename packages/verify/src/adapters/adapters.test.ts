import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { serve } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { type BadToken, badTokens, startTripwire, type Tripwire } from '../../../../test/support/bad_tokens.js';
import { signUp, startTestServer, type TestServer } from '../../../../test/support/test_server.js';
import { createVerifier, type Verifier } from '../create_verifier.js';
import * as expressAdapter from './express.js';
import { tesseraAuth } from './fastify.js';
import * as honoAdapter from './hono.js';
import { authenticate } from './node_http.js';

/** Each adapter serves GET /profile (any valid token) and GET /admin (role admin) on a free port. */
type StartApp = (verifier: Verifier) => Promise<{ url: string; close(): Promise<void> }>;

const listen = async (server: Server) => {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
};

const ADAPTERS: Record<string, StartApp> = {
  express: async (verifier) => {
    const app = express();
    app.get('/profile', expressAdapter.requireAuth(verifier), (req, res) => {
      res.json({ user: (req as unknown as { auth: { username: string } }).auth.username });
    });
    app.get('/admin', expressAdapter.requireAuth(verifier), expressAdapter.requireRole('admin'), (_req, res) => {
      res.json({ admin: true });
    });
    return listen(createServer(app));
  },
  fastify: async (verifier) => {
    const app = Fastify();
    await app.register(tesseraAuth, { verifier });
    app.get('/profile', { preHandler: app.tessera.requireAuth }, async (request) => ({ user: request.auth!.username }));
    app.get('/admin', { preHandler: [app.tessera.requireAuth, app.tessera.requireRole('admin')] }, async () => ({ admin: true }));
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.server.address();
    return { url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`, close: () => app.close() };
  },
  hono: async (verifier) => {
    const app = new Hono<{ Variables: honoAdapter.TesseraVariables }>();
    app.get('/profile', honoAdapter.requireAuth(verifier), (c) => c.json({ user: c.get('auth').username }));
    app.get('/admin', honoAdapter.requireAuth(verifier), honoAdapter.requireRole('admin'), (c) => c.json({ admin: true }));
    const server = await new Promise<ReturnType<typeof serve>>((resolve) => {
      const s = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(s));
    });
    const address = server.address();
    return {
      url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
      close: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  },
  'node:http': async (verifier) =>
    listen(
      createServer(async (req, res) => {
        const admin = req.url === '/admin';
        const auth = await authenticate(verifier, req, res, admin ? { role: 'admin' } : {});
        if (!auth) return;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(admin ? { admin: true } : { user: auth.username }));
      }),
    ),
};

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

  for (const [name, start] of Object.entries(ADAPTERS)) {
    describe(name, () => {
      let app: Awaited<ReturnType<StartApp>>;
      before(async () => {
        const verifier = createVerifier({ issuer, audience: 'tessera-api', jwksUri: `${t.url}/.well-known/jwks.json`, clock: t.clock.now });
        app = await start(verifier);
      });
      after(() => app.close());
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
          assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token", error_description="[^"]+"$/, bad.name);
        }
        assert.equal(tripwire.hits, 0);
      });

      test('the header must be exactly "Bearer <token>"; no header is 401 too', async () => {
        for (const header of [undefined, 'Bearer', `Bearer  ${user.pair.access_token}`, `Basic ${user.pair.access_token}`, `Bearer ${user.pair.access_token} x`]) {
          const res = await get('/profile', header);
          assert.equal(res.status, 401, String(header).slice(0, 10));
          assert.equal((await res.json()).error, 'invalid_token');
        }
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
