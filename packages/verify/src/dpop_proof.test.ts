import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { TesseraError } from '@tessera/protocol';
import { base64url, calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK, SignJWT } from 'jose';
import { accessTokenHash, memoryReplayCache, verifyDpopProof } from './dpop_proof.js';

const URL_ = 'https://auth.example.test/auth/refresh';
const NOW = Date.UTC(2030, 0, 1, 12);

async function keyPair(alg: 'ES256' | 'EdDSA' | 'RS256' = 'ES256') {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const jwk = await exportJWK(publicKey);
  return { alg, privateKey, jwk, jkt: await calculateJwkThumbprint(jwk) };
}

async function proof(
  key: Awaited<ReturnType<typeof keyPair>>,
  claims: Record<string, unknown> = {},
  header: { typ?: string; jwk?: JWK; alg?: string } = {},
): Promise<string> {
  return new SignJWT({ jti: crypto.randomUUID(), htm: 'POST', htu: URL_, iat: Math.floor(NOW / 1000), ...claims })
    .setProtectedHeader({ alg: header.alg ?? key.alg, typ: header.typ ?? 'dpop+jwt', jwk: header.jwk ?? key.jwk })
    .sign(key.privateKey);
}

const check = (p: string | undefined, more: Partial<Parameters<typeof verifyDpopProof>[0]> = {}) =>
  verifyDpopProof({ proof: p, method: 'POST', url: URL_, now: NOW, replay: memoryReplayCache(), ...more });

async function refused(promise: Promise<unknown>, why: RegExp): Promise<void> {
  await assert.rejects(promise, (e: unknown) => e instanceof TesseraError && e.code === 'invalid_dpop_proof' && why.test(e.message));
}

describe('DPoP proofs (RFC 9449 §4.3)', () => {
  test('a proof by ES256 or EdDSA gives its key thumbprint; the query of htu and the URL’s case and default port do not matter', async () => {
    for (const alg of ['ES256', 'EdDSA'] as const) {
      const key = await keyPair(alg);
      assert.deepEqual(await check(await proof(key)), { jkt: key.jkt });
    }
    const key = await keyPair();
    assert.deepEqual(await check(await proof(key, { htu: 'HTTPS://Auth.Example.test:443/auth/refresh?x=1#f' })), { jkt: key.jkt });
  });

  test('every malformed proof is refused with the check it failed', async () => {
    const key = await keyPair();
    const rsa = await keyPair('RS256');
    const { d: _d, ...pub } = (await exportJWK((await generateKeyPair('ES256', { extractable: true })).privateKey)) as JWK & { d: string };
    const privateJwk = { ...pub, d: _d };
    const unsigned = `${base64url.encode(JSON.stringify({ alg: 'none', typ: 'dpop+jwt', jwk: key.jwk }))}.${base64url.encode(JSON.stringify({ jti: 'abcdefghij', htm: 'POST', htu: URL_, iat: NOW / 1000 }))}.`;
    await refused(check(undefined), /no DPoP header/);
    await refused(check('not.a.jwt!'), /compact JWS/);
    await refused(check(unsigned), /compact JWS|alg/);
    await refused(check(await proof(key, {}, { typ: 'JWT' })), /typ/);
    await refused(check(await proof(rsa)), /alg/);
    await refused(check(await proof(key, {}, { jwk: privateJwk })), /private/);
    await refused(check(await proof(key, { htm: 'GET' })), /htm/);
    await refused(check(await proof(key, { htu: 'https://auth.example.test/auth/login' })), /htu/);
    await refused(check(await proof(key, { htu: 'https://evil.example/auth/refresh' })), /htu/);
    await refused(check(await proof(key, { iat: NOW / 1000 - 61 })), /iat/);
    await refused(check(await proof(key, { iat: NOW / 1000 + 61 })), /iat/);
    await refused(check(await proof(key, { jti: undefined })), /jti/);
    const other = await keyPair();
    await refused(check(await proof(key, {}, { jwk: other.jwk })), /signature/);
    await refused(check(await proof(key), { expectedJkt: other.jkt }), /another key/);
  });

  test('a jti is accepted once per key; ath binds the proof to the access token', async () => {
    const key = await keyPair();
    const replay = memoryReplayCache();
    const p = await proof(key);
    await check(p, { replay });
    await refused(check(p, { replay }), /replay/);
    const token = 'eyJhbGciOi.the-access.token';
    await check(await proof(key, { ath: await accessTokenHash(token) }), { accessToken: token });
    await refused(check(await proof(key, { ath: await accessTokenHash('another') }), { accessToken: token }), /ath/);
    await refused(check(await proof(key), { accessToken: token }), /ath/);
  });

  test('a full replay cache refuses new proofs rather than forgetting old ones (fail closed)', async () => {
    const key = await keyPair();
    const replay = memoryReplayCache(2);
    await check(await proof(key), { replay });
    await check(await proof(key), { replay });
    await refused(check(await proof(key), { replay }), /replay/);
  });

  test('a full replay cache takes new keys again as soon as the oldest expire', async () => {
    const replay = memoryReplayCache(2);
    assert.equal(await replay.remember('a', 1000, NOW), true);
    assert.equal(await replay.remember('b', 1000, NOW + 10), true);
    assert.equal(await replay.remember('c', 1000, NOW + 20), false);
    assert.equal(await replay.remember('c', 1000, NOW + 1000), true, 'a expired, so c fits');
    assert.equal(await replay.remember('a', 1000, NOW + 1000), false, 'b is still live: full');
    assert.equal(replay.size, 2);
  });

  test('use, key_ops and alg in the header jwk are ignored: the proof is checked against the key alone', async () => {
    for (const alg of ['ES256', 'EdDSA'] as const) {
      const key = await keyPair(alg);
      const decorated = { ...key.jwk, use: 'sig', key_ops: ['sign'], alg };
      assert.deepEqual(await check(await proof(key, {}, { jwk: decorated })), { jkt: key.jkt });
    }
  });
});

describe('the two proof engines agree (jose on WebCrypto, fast-jwt on node:crypto)', () => {
  test('a good proof passes both; a forged signature, another key, a key of the wrong type for alg or a wrong typ fails both; the digests match', async () => {
    const { proofEngine: joseProof } = await import('./jose_key_verifier.js');
    const { proofEngine: nodeProof } = await import('./node_key_verifier.js');
    for (const alg of ['ES256', 'EdDSA'] as const) {
      const key = await keyPair(alg);
      const other = await keyPair(alg);
      const good = await proof(key);
      const [h, p, sig] = good.split('.');
      const flipped = `${h}.${p}.${sig!.slice(0, -2)}${sig!.endsWith('AA') ? 'BA' : 'AA'}`;
      for (const engine of [joseProof, nodeProof]) {
        const verifier = await engine.prepare(key.jwk, alg);
        assert.equal((await verifier.verify(good)).htm, 'POST');
        await assert.rejects(async () => verifier.verify(flipped));
        await assert.rejects(async () => verifier.verify(await proof(other)), 'signed by another key');
        await assert.rejects(async () => verifier.verify(await proof(key, {}, { typ: 'JWT' })));
        await assert.rejects(engine.prepare(key.jwk, alg === 'ES256' ? 'EdDSA' : 'ES256'), 'a key that does not fit the alg');
      }
    }
    const text = 'tessera:ath';
    assert.equal(await nodeProof.sha256(text), await joseProof.sha256(text));
    assert.equal(await nodeProof.sha256(text), await accessTokenHash(text));
  });

  test('exp and nbf, when a proof carries them, are checked with the iat window', async () => {
    const key = await keyPair();
    const s = Math.floor(NOW / 1000);
    await refused(check(await proof(key, { exp: s - 61 })), /exp has passed/);
    await refused(check(await proof(key, { nbf: s + 61 })), /nbf is in the future/);
    assert.deepEqual(await check(await proof(key, { exp: s + 30, nbf: s - 30 })), { jkt: key.jkt });
  });
});
