import type { SigningAlgorithm } from '@tessera/protocol';

/** Defaults of `createVerifier`, in one place. Every duration option of the verifier is in seconds (fractions allowed). */
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
  jwksTimeoutSeconds: 5,
  /** Between pages of the JSON revocation feed while not streaming. */
  pollIntervalSeconds: 1,
  /** Without news from the feed for this long, it counts as down. */
  maxStalenessSeconds: 30,
  /** Entries of the verified-token cache with `cache: true`. */
  cacheSize: 10_000,
  /** Tokens longer than this are refused before any parsing. */
  maxTokenLength: 16_384,
} as const;
