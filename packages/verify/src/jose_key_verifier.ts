import { ACCESS_TOKEN_TYPE } from '@tessera/protocol';
import { errors, importJWK, jwtVerify } from 'jose';
import { type KeyVerifierEngine, REQUIRED_CLAIMS } from './key_verifier.js';

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
