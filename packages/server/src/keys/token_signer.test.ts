import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SIGNING_ALGORITHMS } from '@tessera/protocol';
import { type CryptoKey, compactVerify, decodeProtectedHeader, generateKeyPair } from 'jose';
import { signToken } from './token_signer.js';

for (const alg of SIGNING_ALGORITHMS) {
  test(`${alg}: a signed token carries exactly the header and the claims given, and verifies with the public key`, async () => {
    const { privateKey, publicKey } = (await generateKeyPair(alg)) as { privateKey: CryptoKey; publicKey: CryptoKey };
    const signer = { kid: `kid-${alg}`, alg, key: privateKey };
    const claims = { iss: 'https://auth.example', sub: 'u1', aud: 'api', iat: 1_800_000_000, exp: 1_800_000_900, jti: 'j1', sid: 's1', roles: ['a', 'b'] };
    for (const typ of ['at+jwt', 'refresh+jwt', 'at+jwt']) {
      const token = await signToken(signer, typ, { ...claims });
      assert.deepEqual(decodeProtectedHeader(token), { alg, kid: `kid-${alg}`, typ });
      const { payload } = await compactVerify(token, publicKey, { algorithms: [alg] });
      assert.deepEqual(JSON.parse(new TextDecoder().decode(payload)), claims);
    }
    // Another key signs with its own key and kid, never a cached signer of the first.
    const other = (await generateKeyPair(alg)) as { privateKey: CryptoKey; publicKey: CryptoKey };
    const token = await signToken({ kid: 'other', alg, key: other.privateKey }, 'at+jwt', { ...claims });
    assert.equal(decodeProtectedHeader(token).kid, 'other');
    await compactVerify(token, other.publicKey, { algorithms: [alg] });
    await assert.rejects(compactVerify(token, publicKey, { algorithms: [alg] }));
  });
}

test('a token with times that are not whole seconds, exp before iat, or an nbf is refused on every path', async () => {
  for (const alg of ['EdDSA', 'RS256'] as const) {
    const { privateKey } = (await generateKeyPair(alg)) as { privateKey: CryptoKey };
    const signer = { kid: 'k', alg, key: privateKey };
    for (const times of [{ iat: 100, exp: 0 }, { iat: 100, exp: Number.NaN }, { iat: Number.NaN, exp: 200 }, { iat: 100, exp: 99 }, { iat: 1.5, exp: 200 }, { iat: 100, exp: 200, nbf: 0 }]) {
      await assert.rejects(signToken(signer, 'at+jwt', { sub: 'u', ...times }), TypeError, `${alg} ${JSON.stringify(times)}`);
    }
  }
});
