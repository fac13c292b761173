import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { ACCESS_TOKEN_TYPE } from '@tessera/protocol';
import { createVerifier } from 'fast-jwt';
import { type KeyVerifierEngine, type ProofVerifierEngine, REQUIRED_CLAIMS } from './key_verifier.js';

/**
 * The Node engine: each key imported once with node:crypto and handed to a
 * `fast-jwt` verifier of its own, which checks tokens synchronously with
 * `crypto.verify` (no WebCrypto promise per token). bench/verify.bench.ts measures
 * it against jose and raw node:crypto.
 *
 * `exp` and `nbf` are left to `checkAccessClaims`, which every engine shares and
 * which reads the verifier's clock (fast-jwt's own clock is fixed at creation).
 */
export const nodeEngine: KeyVerifierEngine = Object.freeze<KeyVerifierEngine>({
  name: 'fast-jwt' as const,
  async prepare(jwk, alg, policy) {
    const key = createPublicKey({ key: jwk as never, format: 'jwk' });
    if (!fits(key, alg)) throw new TypeError(`the key ${String(jwk.kid)} does not fit ${alg}`);
    const verify = createVerifier({
      key: key.export({ type: 'spki', format: 'pem' }) as string,
      algorithms: [alg],
      allowedIss: policy.issuer,
      allowedAud: policy.audience,
      checkTyp: ACCESS_TOKEN_TYPE,
      requiredClaims: [...REQUIRED_CLAIMS],
      ignoreExpiration: true,
      ignoreNotBefore: true,
      cache: false,
    });
    return { verify: (token: string) => verify(token) as Record<string, unknown> };
  },
  isExpired: () => false,
});
export { nodeEngine as engine };

function fits(key: KeyObject, alg: string): boolean {
  const details = key.asymmetricKeyDetails ?? {};
  if (key.type !== 'public') return false;
  if (alg === 'EdDSA') return key.asymmetricKeyType === 'ed25519';
  if (alg === 'ES256') return key.asymmetricKeyType === 'ec' && details.namedCurve === 'prime256v1';
  return key.asymmetricKeyType === 'rsa' && (details.modulusLength ?? 0) >= 2048;
}

/**
 * DPoP proofs on node:crypto: one `fast-jwt` verifier per proof key, synchronous (a
 * proof costs no WebCrypto round trips). `exp`/`nbf`, when a proof has them, are the
 * caller's, checked with the `iat` window.
 */
export const nodeProofEngine: ProofVerifierEngine = Object.freeze<ProofVerifierEngine>({
  async prepare(jwk, alg) {
    const key = createPublicKey({ key: jwk as never, format: 'jwk' });
    if (!fits(key, alg)) throw new TypeError(`the proof key does not fit ${alg}`);
    const verify = createVerifier({
      key: key.export({ type: 'spki', format: 'pem' }) as string,
      algorithms: [alg as 'ES256' | 'EdDSA'],
      checkTyp: 'dpop+jwt',
      ignoreExpiration: true,
      ignoreNotBefore: true,
      cache: false,
    });
    return { verify: (proof: string) => verify(proof) as Record<string, unknown> };
  },
  sha256: (text) => createHash('sha256').update(text).digest('base64url'),
});
export { nodeProofEngine as proofEngine };
