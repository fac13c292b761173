import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { SIGNING_ALGORITHMS, TesseraError } from '@tessera/protocol';
import { CompactSign, type CryptoKey, generateKeyPair, jwtVerify } from 'jose';
import { migrate } from '../store/migrations.js';
import { openPgliteDatabase } from '../store/pglite_database.js';
import { Store } from '../store/store.js';
import { KeyRing } from './key_ring.js';
import { CLOCK_TOLERANCE_SECONDS, verifySignedToken } from './token_verifier.js';

const db = await openPgliteDatabase(undefined);
await migrate(db);
const store = new Store(db);
after(() => db.close());

const NOW = 1_800_000_000_000;
const ISS = 'https://auth.example';
const expect = { typ: 'refresh+jwt', issuer: ISS, audience: ISS, now: NOW };
const t0 = NOW / 1000;
const claims = { iss: ISS, sub: 'u1', aud: ISS, iat: t0, exp: t0 + 600, jti: 'j1', sid: 's1' };

async function sign(key: CryptoKey, header: Record<string, unknown>, payload: unknown): Promise<string> {
  // jose signs a crit extension only when told it is understood.
  return new CompactSign(new TextEncoder().encode(JSON.stringify(payload))).setProtectedHeader(header as never).sign(key, { crit: { 'x-ext': true } });
}

/** What jose's jwtVerify (the server's verifier before this one) says of the same token. */
async function joseSays(ring: KeyRing, token: string, now = NOW): Promise<string> {
  try {
    await jwtVerify(
      token,
      (header) => {
        const key = ring.verificationKey(header);
        if (!key) throw new Error('unknown key');
        return key.key;
      },
      { algorithms: ring.algorithms(), issuer: ISS, audience: ISS, typ: 'refresh+jwt', currentDate: new Date(now), clockTolerance: CLOCK_TOLERANCE_SECONDS, requiredClaims: ['sub', 'exp', 'iat', 'jti', 'sid'] },
    );
    return 'ok';
  } catch (error) {
    return (error as { code?: string }).code === 'ERR_JWT_EXPIRED' ? 'token_expired' : 'invalid_token';
  }
}

function oursSays(ring: KeyRing, token: string, now = NOW): string {
  try {
    verifySignedToken(ring, token, { ...expect, now });
    return 'ok';
  } catch (error) {
    assert.ok(error instanceof TesseraError, String(error));
    return error.code;
  }
}

for (const alg of SIGNING_ALGORITHMS) {
  test(`${alg}: the in-place verifier accepts and refuses exactly what jose does, with the caller's clock`, async () => {
    const ring = await KeyRing.load(store, { alg, refreshTtl: 86_400, now: () => NOW });
    const { kid } = ring.signer;
    const key = ring.signer.key;
    const header = { alg, kid, typ: 'refresh+jwt' };
    const stranger = (await generateKeyPair(alg)) as { privateKey: CryptoKey };
    const otherAlg = alg === 'EdDSA' ? 'ES256' : 'EdDSA';
    const other = (await generateKeyPair(otherAlg)) as { privateKey: CryptoKey };
    const genuine = await sign(key, header, claims);
    const [h, p] = genuine.split('.') as [string, string];
    const cases: [string, string, number, string][] = [
      ['genuine', genuine, NOW, 'ok'],
      ['4 s after exp (tolerance 5 s)', genuine, (claims.exp + 4) * 1000, 'ok'],
      ['5 s after exp', genuine, (claims.exp + 5) * 1000, 'token_expired'],
      ['a day after exp', genuine, (claims.exp + 86_400) * 1000, 'token_expired'],
      ['nbf 4 s ahead', await sign(key, header, { ...claims, nbf: t0 + 4 }), NOW, 'ok'],
      ['nbf 6 s ahead', await sign(key, header, { ...claims, nbf: t0 + 6 }), NOW, 'invalid_token'],
      ['nbf not a number', await sign(key, header, { ...claims, nbf: 'soon' }), NOW, 'invalid_token'],
      ['exp not a number', await sign(key, header, { ...claims, exp: String(claims.exp) }), NOW, 'invalid_token'],
      ['iat not a number', await sign(key, header, { ...claims, iat: 'then' }), NOW, 'invalid_token'],
      ['aud as an array holding the issuer', await sign(key, header, { ...claims, aud: ['x', ISS] }), NOW, 'ok'],
      ['another aud', await sign(key, header, { ...claims, aud: 'tessera-api' }), NOW, 'invalid_token'],
      ['another iss', await sign(key, header, { ...claims, iss: 'https://evil.example' }), NOW, 'invalid_token'],
      ['no iss', await sign(key, header, { ...claims, iss: undefined }), NOW, 'invalid_token'],
      ['no aud', await sign(key, header, { ...claims, aud: undefined }), NOW, 'invalid_token'],
      ['iss as an array', await sign(key, header, { ...claims, iss: [ISS] }), NOW, 'invalid_token'],
      ...(await Promise.all(
        (['sub', 'exp', 'iat', 'jti', 'sid'] as const).map(async (claim): Promise<[string, string, number, string]> => {
          const { [claim]: _, ...rest } = claims;
          return [`no ${claim}`, await sign(key, header, rest), NOW, 'invalid_token'];
        }),
      )),
      ['typ at+jwt', await sign(key, { ...header, typ: 'at+jwt' }, claims), NOW, 'invalid_token'],
      ['typ application/refresh+JWT (the same media type)', await sign(key, { ...header, typ: 'application/refresh+JWT' }, claims), NOW, 'ok'],
      ['no typ', await sign(key, { alg, kid }, claims), NOW, 'invalid_token'],
      ['crit', await sign(key, { ...header, crit: ['x-ext'], 'x-ext': 1 }, claims), NOW, 'invalid_token'],
      ['unknown kid', await sign(key, { ...header, kid: 'nope' }, claims), NOW, 'invalid_token'],
      ['no kid', await sign(key, { alg, typ: 'refresh+jwt' }, claims), NOW, 'invalid_token'],
      ['signed by a stranger under our kid', await sign(stranger.privateKey, header, claims), NOW, 'invalid_token'],
      [`our kid under ${otherAlg}`, await sign(other.privateKey, { ...header, alg: otherAlg }, claims), NOW, 'invalid_token'],
      ['alg none', `${Buffer.from(JSON.stringify({ alg: 'none', kid, typ: 'refresh+jwt' })).toString('base64url')}.${p}.`, NOW, 'invalid_token'],
      ['payload swapped', `${h}.${Buffer.from(JSON.stringify({ ...claims, sub: 'admin' })).toString('base64url')}.${genuine.split('.')[2]}`, NOW, 'invalid_token'],
      ['header not JSON', `${Buffer.from('{"alg"').toString('base64url')}.${p}.${genuine.split('.')[2]}`, NOW, 'invalid_token'],
      ['header an array', `${Buffer.from('[1]').toString('base64url')}.${p}.${genuine.split('.')[2]}`, NOW, 'invalid_token'],
      ['payload an array', await sign(key, header, [claims]), NOW, 'invalid_token'],
      ['two segments', `${h}.${p}`, NOW, 'invalid_token'],
      ['empty', '', NOW, 'invalid_token'],
    ];
    for (const [name, token, now, want] of cases) {
      assert.equal(oursSays(ring, token, now), want, `${name}: ours`);
      assert.equal(await joseSays(ring, token, now), want, `${name}: jose`);
    }
  });
}

test('a token that is not a string (plain JavaScript callers) is invalid_token, not a TypeError', async () => {
  const ring = await KeyRing.load(store, { alg: 'EdDSA', refreshTtl: 86_400, now: () => NOW });
  for (const token of [undefined, null, 123, {}, ['a.b.c']]) {
    assert.equal(oursSays(ring, token as unknown as string), 'invalid_token', String(token));
  }
});

test('many forged headers do not grow the header cache without bound, and the genuine token still verifies', async () => {
  const ring = await KeyRing.load(store, { alg: 'EdDSA', refreshTtl: 86_400, now: () => NOW });
  const genuine = await sign(ring.signer.key, { alg: 'EdDSA', kid: ring.signer.kid, typ: 'refresh+jwt' }, claims);
  const [, p, s] = genuine.split('.') as [string, string, string];
  for (let i = 0; i < 1_000; i++) {
    const forged = `${Buffer.from(JSON.stringify({ alg: 'EdDSA', kid: `k${i}`, typ: 'refresh+jwt' })).toString('base64url')}.${p}.${s}`;
    assert.equal(oursSays(ring, forged), 'invalid_token');
  }
  assert.equal(oursSays(ring, genuine), 'ok');
});
