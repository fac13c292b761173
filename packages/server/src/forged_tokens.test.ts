import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { decodeJwt, exportJWK, exportSPKI, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { signUp, startTestServer, type TestServer } from '../../../test/support/test_server.js';

/** Base64url of a JSON object, via Node's own encoder (no hand-written base64). */
const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('forged and wrong tokens are refused', () => {
  let t: TestServer;
  let access: string;
  let refresh: string;
  let claims: ReturnType<typeof decodeJwt>;
  let publicJwk: JWK;
  let publicPem: string;
  let hits = 0;
  let attacker: Server;
  let attackerUrl: string;

  before(async () => {
    t = await startTestServer();
    const { pair } = await signUp(t);
    access = pair.access_token;
    refresh = pair.refresh_token;
    claims = decodeJwt(access);
    const jwks = await t.call('GET', '/.well-known/jwks.json');
    publicJwk = jwks.body.keys[0];
    publicPem = await exportSPKI((await importJWK(publicJwk, 'RS256', { extractable: true })) as CryptoKey);
    // A listener an attacker would point jku/x5u at: it must never be asked anything.
    attacker = createServer((_req, res) => {
      hits += 1;
      res.end('{}');
    });
    await new Promise<void>((resolve) => attacker.listen(0, '127.0.0.1', resolve));
    const address = attacker.address();
    attackerUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  });
  after(async () => {
    await t.close();
    await new Promise((resolve) => attacker.close(resolve));
  });

  async function expectRefused(token: string, code = 'invalid_token', path = '/auth/me') {
    const res = path === '/auth/me' ? await t.call('GET', path, { token }) : await t.call('POST', path, { token });
    assert.equal(res.status, 401, `status for ${path}`);
    assert.equal(res.body.error, code);
    assert.equal(res.headers.get('www-authenticate'), 'Bearer error="invalid_token"');
  }

  /** Signs with the server's own key, to forge one wrong claim or header at a time. */
  async function signWithServerKey(payload: Record<string, unknown>, header: Record<string, unknown>) {
    const signer = t.server.context.keys.signer;
    return new SignJWT(payload).setProtectedHeader({ alg: signer.alg, kid: signer.kid, ...header }).sign(signer.key);
  }

  test('the genuine token is accepted (the baseline of every case below)', async () => {
    assert.equal((await t.call('GET', '/auth/me', { token: access })).status, 200);
  });

  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    test(`alg "${alg}" with and without a signature`, async () => {
      const [, payload] = access.split('.');
      const header = part({ alg, typ: 'at+jwt', kid: publicJwk.kid });
      await expectRefused(`${header}.${payload}.`);
      await expectRefused(`${header}.${payload}`);
      await expectRefused(`${header}.${payload}.${access.split('.')[2]}`);
    });
  }

  test('HS256 signed with the public key as PEM, as JWK JSON and as JWKS text', async () => {
    const jwksText = JSON.stringify({ keys: [publicJwk] });
    for (const secret of [publicPem, JSON.stringify(publicJwk), jwksText, publicJwk.n!]) {
      const forged = await new SignJWT({ ...claims })
        .setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: publicJwk.kid })
        .sign(new TextEncoder().encode(secret));
      await expectRefused(forged);
    }
  });

  test('an embedded jwk, a jku, an x5u or an x5c header is never used, and nothing is fetched', async () => {
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const attackerJwk = await exportJWK(publicKey);
    const headers = [
      { jwk: attackerJwk },
      { jwk: attackerJwk, kid: 'attacker' },
      { jku: `${attackerUrl}/jwks.json` },
      { jku: `${attackerUrl}/jwks.json`, kid: 'attacker' },
      { x5u: `${attackerUrl}/cert.pem` },
      { x5c: ['MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA'] },
    ];
    for (const extra of headers) {
      const forged = await new SignJWT({ ...claims })
        .setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: publicJwk.kid, ...extra })
        .sign(privateKey);
      await expectRefused(forged);
    }
    assert.equal(hits, 0, 'the attacker listener was never contacted');
  });

  test('wrong typ, iss, aud, a missing kid, an unknown kid and a key of another algorithm', async () => {
    await expectRefused(await signWithServerKey({ ...claims }, { typ: 'JWT' }));
    await expectRefused(await signWithServerKey({ ...claims }, { typ: 'refresh+jwt' }));
    await expectRefused(await signWithServerKey({ ...claims, iss: 'https://evil.example' }, { typ: 'at+jwt' }));
    await expectRefused(await signWithServerKey({ ...claims, aud: 'another-api' }, { typ: 'at+jwt' }));
    await expectRefused(await signWithServerKey({ ...claims }, { typ: 'at+jwt', kid: 'no-such-kid' }));
    const noKid = await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt' }).sign(t.server.context.keys.signer.key);
    await expectRefused(noKid);
    // The genuine key under PS256: same RSA key, an algorithm it was not published for.
    const { privateKey } = await generateKeyPair('PS256');
    const ps = await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'PS256', typ: 'at+jwt', kid: publicJwk.kid }).sign(privateKey);
    await expectRefused(ps);
  });

  test('missing claims (sid, jti) are refused even when signed by the server', async () => {
    const { sid: _sid, ...noSid } = claims;
    await expectRefused(await signWithServerKey(noSid, { typ: 'at+jwt' }));
    const { jti: _jti, ...noJti } = claims;
    await expectRefused(await signWithServerKey(noJti, { typ: 'at+jwt' }));
  });

  test('a not-yet-valid token (nbf in the future) is refused', async () => {
    const nbf = Math.floor(t.clock.now() / 1000) + 3600;
    await expectRefused(await signWithServerKey({ ...claims, nbf }, { typ: 'at+jwt' }));
  });

  test('truncated, tampered and garbage tokens', async () => {
    const [h, p, s] = access.split('.') as [string, string, string];
    const flipped = s.slice(0, -2) + (s.at(-2) === 'A' ? 'B' : 'A') + s.at(-1);
    const tamperedPayload = part({ ...claims, username: 'admin', roles: ['admin'] });
    for (const token of [`${h}.${p}`, `${h}.${p}.${s.slice(0, 20)}`, `${h}.${p}.${flipped}`, `${h}.${tamperedPayload}.${s}`, 'garbage', 'a.b.c', '..']) {
      await expectRefused(token);
    }
  });

  test('forged refresh tokens are refused at /auth/refresh, and the real one still works after', async () => {
    const rclaims = decodeJwt(refresh);
    const { privateKey } = await generateKeyPair('RS256');
    const otherKey = await new SignJWT({ ...rclaims }).setProtectedHeader({ alg: 'RS256', typ: 'refresh+jwt', kid: publicJwk.kid }).sign(privateKey);
    await expectRefused(otherKey, 'invalid_token', '/auth/refresh');
    const hs = await new SignJWT({ ...rclaims }).setProtectedHeader({ alg: 'HS256', typ: 'refresh+jwt' }).sign(new TextEncoder().encode(publicPem));
    await expectRefused(hs, 'invalid_token', '/auth/refresh');
    const none = `${part({ alg: 'none', typ: 'refresh+jwt' })}.${refresh.split('.')[1]}.`;
    await expectRefused(none, 'invalid_token', '/auth/refresh');
    const wrongAud = await signWithServerKey({ ...rclaims, aud: 'tessera-api' }, { typ: 'refresh+jwt' });
    await expectRefused(wrongAud, 'invalid_token', '/auth/refresh');
    // A token signed by us for a jti we never issued is unknown.
    const unknownJti = await signWithServerKey({ ...rclaims, jti: 'never-issued' }, { typ: 'refresh+jwt' });
    await expectRefused(unknownJti, 'invalid_token', '/auth/refresh');
    assert.equal((await t.call('POST', '/auth/refresh', { token: refresh })).status, 200);
  });

  test('the Authorization header must be exactly "Bearer <token>"', async () => {
    for (const header of [`Bearer`, `Bearer  ${access}`, `Bearer ${access} extra`, `Basic ${access}`, access, `Token ${access}`]) {
      const res = await t.call('GET', '/auth/me', { headers: { authorization: header } });
      assert.equal(res.status, 401, header.slice(0, 12));
      assert.equal(res.body.error, 'invalid_token');
    }
    assert.equal((await t.call('GET', '/auth/me')).body.error, 'invalid_token');
  });
});
