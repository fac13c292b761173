import type { SigningAlgorithm } from '@tessera/protocol';

/** Defaults of `createVerifier`, in one place. */
export const VERIFY_DEFAULTS = {
  /** What a Tessera server signs with. */
  algorithms: ['RS256', 'PS256', 'ES256', 'EdDSA'] as SigningAlgorithm[],
  /** Seconds of leeway on `exp`/`nbf`/`iat`, for clock skew between machines. */
  clockTolerance: 5,
  /** Used when the JWKS response has no `Cache-Control: max-age`. */
  jwksMaxAgeSeconds: 300,
  /** A JWKS `max-age` is clamped into this range: fresh keys within a minute, no more than a day of staleness. */
  jwksMinMaxAgeSeconds: 30,
  jwksMaxMaxAgeSeconds: 86_400,
  /** At most one unknown-`kid` refetch per this many seconds (an attacker can mint any `kid`). */
  jwksCooldownSeconds: 30,
  /** A JWKS fetch that takes longer is abandoned (known keys keep serving). */
  jwksTimeoutMs: 5_000,
  /** Entries of the verified-token cache with `cache: true`. */
  cacheSize: 10_000,
  /** Tokens longer than this are refused before any parsing. */
  maxTokenLength: 16_384,
} as const;
