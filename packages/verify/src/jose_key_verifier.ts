import { ACCESS_TOKEN_TYPE } from '@tessera/protocol';
import { base64url, errors, importJWK, jwtVerify } from 'jose';
import { type KeyVerifierEngine, type ProofVerifierEngine, REQUIRED_CLAIMS } from './key_verifier.js';

/** The portable engine: `jose` on WebCrypto, for every runtime with Web APIs. */
export const joseEngine: KeyVerifierEngine = Object.freeze<KeyVerifierEngine>({
  name: 'jose' as const,
  async prepare(jwk, alg, policy) {
    const key = await importJWK(jwk, alg);
    const options = {
      algorithms: [alg],
      issuer: policy.issuer,
      audience: policy.audience,
      typ: ACCESS_TOKEN_TYPE,
      clockTolerance: policy.clockTolerance,
      requiredClaims: [...REQUIRED_CLAIMS],
    };
    return {
      async verify(token: string, nowMs: number) {
        const { payload } = await jwtVerify(token, key, { ...options, currentDate: new Date(nowMs) });
        return payload as Record<string, unknown>;
      },
    };
  },
  isExpired: (error) => error instanceof errors.JWTExpired,
});
export { joseEngine as engine };

/** DPoP proofs on WebCrypto: `jose` verifies; `exp`/`nbf`, when a proof has them, are the caller's (with the iat window). */
export const joseProofEngine: ProofVerifierEngine = Object.freeze<ProofVerifierEngine>({
  async prepare(jwk, alg) {
    const key = await importJWK({ ...jwk, ext: true }, alg);
    // A symmetric key never signs a proof (RFC 9449 §4.3); importJWK of a public JWK gives a public key.
    if (key instanceof Uint8Array || key.type !== 'public') throw new TypeError('not a public key');
    return {
      async verify(proof: string) {
        const { payload } = await jwtVerify(proof, key, { typ: 'dpop+jwt', algorithms: [alg], clockTolerance: 2 ** 31 }); // exp/nbf: the caller's
        return payload as Record<string, unknown>;
      },
    };
  },
  async sha256(text) {
    return base64url.encode(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(text))));
  },
});
export { joseProofEngine as proofEngine };
