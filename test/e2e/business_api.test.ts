import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { buildBusinessApi } from '@tessera/example-business-api';
import type { FastifyInstance } from 'fastify';
import { createRemoteJWKSet, jwtVerify } from 'jose';
import jwt from 'jsonwebtoken';
import jwksClient from 'jwks-rsa';
import { signUp, startTestServer, type TestServer } from '../support/test_server.js';

/** The design notes' flow: the auth server issues, the business API verifies with the JWKS alone. */
describe('example business API against the real auth server', () => {
  const issuer = 'http://localhost:4000';
  let t: TestServer;
  let api: FastifyInstance;
  let apiUrl: string;

  before(async () => {
    t = await startTestServer({ issuer, feedHeartbeat: 1 });
    api = await buildBusinessApi({ issuer, authUrl: t.url, clock: t.clock.now });
    await api.listen({ port: 0, host: '127.0.0.1' });
    const address = api.server.address();
    apiUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  after(async () => {
    await api.close();
    await t.close();
  });

  const get = (path: string, token?: string) => fetch(apiUrl + path, { headers: token ? { authorization: `Bearer ${token}` } : {} });

  test('public route needs nothing; the profile needs a token; admin needs the role', async () => {
    assert.equal((await get('/api/public')).status, 200);
    const none = await get('/api/profile');
    assert.equal(none.status, 401);
    assert.match(none.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token", error_description="/);
    const { pair, username } = await signUp(t);
    const profile = await get('/api/profile', pair.access_token);
    assert.equal(profile.status, 200);
    assert.equal((await profile.json()).username, username);
    const admin = await get('/api/admin', pair.access_token);
    assert.equal(admin.status, 403);
    assert.equal((await admin.json()).error, 'insufficient_scope');
  });

  test('an expired access token is 401 token_expired; after a refresh the call succeeds', async () => {
    const { pair } = await signUp(t);
    t.clock.advance(15 * 60 + 10);
    const expired = await get('/api/profile', pair.access_token);
    assert.equal(expired.status, 401);
    assert.equal((await expired.json()).error, 'token_expired');
    const refreshed = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    // The feed's staleness runs on the same (moved) clock: let one heartbeat arrive.
    await new Promise((resolve) => setTimeout(resolve, 1200));
    assert.equal((await get('/api/profile', refreshed.body.access_token)).status, 200);
  });

  test('a logout reaches the business API through the feed within a second', async () => {
    const { pair } = await signUp(t);
    assert.equal((await get('/api/profile', pair.access_token)).status, 200);
    await t.call('POST', '/auth/logout', { token: pair.access_token });
    const started = Date.now();
    let status = 200;
    while (status === 200 && Date.now() - started < 1000) {
      status = (await get('/api/profile', pair.access_token)).status;
      if (status === 200) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(status, 401, `still accepted ${Date.now() - started} ms after the logout`);
  });
});

describe('interop: tokens verify with other libraries through the JWKS', () => {
  for (const alg of ['RS256', 'PS256', 'ES256'] as const) {
    test(`${alg}: jose createRemoteJWKSet and jwks-rsa + jsonwebtoken`, async () => {
      const t = await startTestServer({ alg, issuer: 'http://localhost:4000' });
      try {
        const { pair } = await signUp(t);
        const jwksUri = `${t.url}/.well-known/jwks.json`;
        const at = new Date(t.clock.now());
        const viaJose = await jwtVerify(pair.access_token, createRemoteJWKSet(new URL(jwksUri)), {
          issuer: 'http://localhost:4000',
          audience: 'tessera-api',
          typ: 'at+jwt',
          algorithms: [alg],
          currentDate: at,
        });
        assert.equal(viaJose.payload.sid, pair.session_id);
        const client = jwksClient({ jwksUri, cache: false });
        const decoded = jwt.decode(pair.access_token, { complete: true })!;
        const key = await client.getSigningKey(decoded.header.kid);
        const claims = jwt.verify(pair.access_token, key.getPublicKey(), {
          algorithms: [alg],
          issuer: 'http://localhost:4000',
          audience: 'tessera-api',
          clockTimestamp: Math.floor(at.getTime() / 1000),
        }) as jwt.JwtPayload;
        assert.equal(claims.sid, pair.session_id);
      } finally {
        await t.close();
      }
    });
  }
});
