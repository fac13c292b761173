import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeJwt, exportJWK, exportSPKI, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import { type BadToken, badTokens, startTripwire, type Tripwire } from '../../../test/support/bad_tokens.js';
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
  let tripwire: Tripwire;
  let table: BadToken[];

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
    tripwire = await startTripwire();
    // The table every verifier and adapter of @tessera/verify refuses too.
    table = await badTokens(t, pair, tripwire.url);
  });
  after(async () => {
    await t.close();
    await tripwire.close();
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

  test('every token of the shared bad-token table is refused at /auth/me with its code', async () => {
    for (const bad of table) {
      await expectRefused(bad.token, bad.code).catch((error: Error) => {
        throw new Error(`${bad.name}: ${error.message}`);
      });
    }
    assert.equal(tripwire.hits, 0, 'the jku/x5u listener was never contacted');
  });

  test('beyond the table: other spellings of alg none, HS256 keyed with the modulus, attacker headers with a kid, x5c', async () => {
    const [h, p, s] = access.split('.') as [string, string, string];
    for (const alg of ['none', 'nOnE']) await expectRefused(`${part({ alg, typ: 'at+jwt', kid: publicJwk.kid })}.${p}`);
    for (const secret of [publicPem, publicJwk.n!]) {
      const forged = await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: publicJwk.kid }).sign(new TextEncoder().encode(secret));
      await expectRefused(forged);
    }
    const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
    const attackerJwk = await exportJWK(publicKey);
    for (const extra of [
      { jwk: attackerJwk, kid: 'attacker' },
      { jku: `${tripwire.url}/jwks.json`, kid: publicJwk.kid },
      { x5c: ['MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA'], kid: publicJwk.kid },
    ]) {
      await expectRefused(await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', ...extra }).sign(privateKey));
    }
    assert.equal(tripwire.hits, 0);
    const flipped = s.slice(0, -2) + (s.at(-2) === 'A' ? 'B' : 'A') + s.at(-1);
    for (const token of [`${h}.${p}.${flipped}`, 'a.b.c', '..']) await expectRefused(token);
  });

  test('signed by the server but wrong: typ refresh+jwt, no kid, the RSA key under PS256, missing sid or jti', async () => {
    await expectRefused(await signWithServerKey({ ...claims }, { typ: 'refresh+jwt' }));
    const noKid = await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt' }).sign(t.server.context.keys.signer.key);
    await expectRefused(noKid);
    // PS256 under the genuine kid: an algorithm the key was not published for.
    const { privateKey } = await generateKeyPair('PS256');
    await expectRefused(await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'PS256', typ: 'at+jwt', kid: publicJwk.kid }).sign(privateKey));
    const { sid: _sid, ...noSid } = claims;
    await expectRefused(await signWithServerKey(noSid, { typ: 'at+jwt' }));
    const { jti: _jti, ...noJti } = claims;
    await expectRefused(await signWithServerKey(noJti, { typ: 'at+jwt' }));
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
    // The real token survived every forgery above.
    const next = await t.call('POST', '/auth/refresh', { token: refresh });
    assert.equal(next.status, 200);
    // Signed with our own key for this session, but neither its current token nor the
    // one just replaced: an old link of the chain, or our key in someone's hands.
    // Either way the session ends, and its real token with it.
    const unknownJti = await signWithServerKey({ ...rclaims, jti: 'never-issued' }, { typ: 'refresh+jwt' });
    await expectRefused(unknownJti, 'token_reused', '/auth/refresh');
    await expectRefused(next.body.refresh_token, 'token_revoked', '/auth/refresh');
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
