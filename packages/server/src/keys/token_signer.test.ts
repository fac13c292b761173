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
