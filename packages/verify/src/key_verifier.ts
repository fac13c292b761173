import type { SigningAlgorithm } from '@tessera/protocol';
import type { JWK } from 'jose';

/** What a key verifier checks besides the signature, fixed when the verifier is created. */
export interface VerifyPolicy {
  issuer: string;
  audience: string;
  /** Seconds of leeway on `exp`/`nbf`. */
  clockTolerance: number;
}

/**
 * One published key, imported once, ready to check tokens signed with it: the
 * signature, the algorithm (exactly the key's), `typ: at+jwt`, `crit`, `iss`, `aud`
 * and the presence of the required claims. Throws on any failure; the caller maps
 * the failure to an error code and runs the time and shape checks
 * (`checkAccessClaims`), which are the same for every engine.
 */
export interface KeyVerifier {
  verify(token: string, nowMs: number): Record<string, unknown> | Promise<Record<string, unknown>>;
}

/**
 * How keys are imported and tokens checked: `jose` on WebCrypto (the portable
 * engine, for Bun, Deno and edge runtimes) or `fast-jwt` on node:crypto KeyObjects
 * (the Node engine). The package's `#key-verifier` import picks one by runtime.
 */
export interface KeyVerifierEngine {
  readonly name: 'jose' | 'fast-jwt';
  /** Imports a public JWK once. Rejects when the key is unusable for `alg`. */
  prepare(jwk: JWK, alg: SigningAlgorithm, policy: VerifyPolicy): Promise<KeyVerifier>;
  /** Whether a failure thrown by `verify` means the token has expired. */
  isExpired(error: unknown): boolean;
}

/** Claims every Tessera access token has; a token missing one is refused. */
export const REQUIRED_CLAIMS = ['iss', 'aud', 'sub', 'exp', 'iat', 'jti', 'sid'] as const;

/**
 * DPoP proofs (RFC 9449) checked with the same engine: a proof key imported once
 * (the caller keeps it per proof header), then each proof's signature, `alg` (exactly
 * the key's) and `typ: dpop+jwt`. Returns the payload; time and claim checks are the
 * caller's, the same for every engine.
 */
export interface ProofVerifierEngine {
  /** Imports a proof's public JWK for `alg` (ES256 or EdDSA). Rejects when it does not fit. */
  prepare(jwk: JWK, alg: string): Promise<{ verify(proof: string): Record<string, unknown> | Promise<Record<string, unknown>> }>;
  /** base64url(SHA-256(text)): `ath`, and the replay cache's key. */
  sha256(text: string): string | Promise<string>;
}
