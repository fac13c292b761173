import { ACCESS_TOKEN_TYPE, type AccessTokenClaims, SIGNING_ALGORITHMS, type SigningAlgorithm, TesseraError } from '@tessera/protocol';
import { errors, jwtVerify } from 'jose';
import { VERIFY_DEFAULTS } from './defaults.js';
import { JwksCache } from './jwks_cache.js';
import { RevocationFeed } from './revocation_feed.js';

export interface VerifierOptions {
  /** The auth server's issuer (`iss` of its tokens), e.g. `https://auth.example.com`. */
  issuer: string;
  /** This API's audience: the `aud` the auth server puts in access tokens (its `--audience`). */
  audience: string;
  /** The auth server's JWKS, e.g. `https://auth.example.com/.well-known/jwks.json`. */
  jwksUri: string;
  /** Allowed signature algorithms. Default: RS256, PS256, ES256, EdDSA. `none` and HMAC are never allowed. */
  algorithms?: SigningAlgorithm[];
  /** Leeway on `exp`/`nbf`, in seconds. Default 5; at most 300. */
  clockTolerance?: number;
  /** Seconds between unknown-`kid` refetches of the JWKS. Default 30. */
  jwksCooldown?: number;
  /** Milliseconds before a JWKS fetch is abandoned. Default 5000. */
  jwksTimeout?: number;
  /** The `fetch` to reach the JWKS with. Default `globalThis.fetch`. */
  fetch?: typeof globalThis.fetch;
  /**
   * Reject tokens of revoked sessions (logout, password change, theft) without a
   * database hit: follow the auth server's revocation feed. Without it, a revoked
   * session's access tokens stay valid until they expire (`--access-ttl`).
   */
  revocation?: RevocationOptions | boolean;
  /** Time in ms since the epoch. Default `Date.now`; tests inject a clock. */
  clock?: () => number;
}

export interface RevocationOptions {
  /** The feed. Default `<issuer>/auth/revocations`. */
  url?: string;
  /** Seconds without a word from the feed (it sends a heartbeat every 10 s) before it counts as down. Default 30. */
  maxStaleness?: number;
  /**
   * While the feed is down: `'reject'` (the default, fail closed) refuses every
   * token with `token_revoked`, since revocations may be missed; `'accept'` serves
   * tokens until they expire, as if there were no feed.
   */
  whenStale?: 'reject' | 'accept';
}

/** A verifier: one per auth server, created at start-up and shared by every request. */
export interface Verifier {
  /**
   * Verifies an access token. Resolves to its claims; rejects with a `TesseraError`
   * whose `code` is `invalid_token`, `token_expired` or `token_revoked`.
   */
  verify(token: string): Promise<AccessTokenClaims>;
  /** Fetches the JWKS (and waits for the revocation feed, when on), e.g. at start-up. */
  prefetch(): Promise<void>;
  /** Stops following the revocation feed. */
  close(): void;
}

/**
 * Creates a verifier for access tokens of one Tessera auth server. Every check is
 * always on: the algorithm allow-list, `typ: at+jwt` (so a refresh token is never
 * an access token), `iss`, `aud`, `exp`/`nbf`, and the required claims.
 *
 * @example
 * const verifier = createVerifier({
 *   issuer: 'http://localhost:4000',
 *   audience: 'tessera-api',
 *   jwksUri: 'http://localhost:4000/.well-known/jwks.json',
 * })
 * const claims = await verifier.verify(token) // { sub, username, roles, sid, … }
 * @throws TypeError for options that cannot be right (a caller's bug, at construction)
 */
export function createVerifier(options: VerifierOptions): Verifier {
  const config = validate(options);
  const now = options.clock ?? Date.now;
  const jwks = new JwksCache({
    jwksUri: config.jwksUri,
    algorithms: config.algorithms,
    fetch: options.fetch ?? globalThis.fetch.bind(globalThis),
    now,
    cooldownMs: config.jwksCooldown * 1000,
    timeoutMs: config.jwksTimeout,
  });

  const feedOptions = options.revocation === true ? {} : options.revocation || undefined;
  const feed = feedOptions
    ? new RevocationFeed({
        url: feedOptions.url ?? `${config.issuer.replace(/\/+$/, '')}/auth/revocations`,
        fetch: options.fetch ?? globalThis.fetch.bind(globalThis),
        now,
        maxStaleness: feedOptions.maxStaleness ?? 30,
      })
    : undefined;
  const failClosed = feedOptions?.whenStale !== 'accept';
  feed?.start();

  return Object.freeze({
    async prefetch() {
      await Promise.all([jwks.refresh(), feed?.ready()]);
    },
    close() {
      feed?.close();
    },
    async verify(token: string): Promise<AccessTokenClaims> {
      if (typeof token !== 'string' || token.length === 0 || token.length > VERIFY_DEFAULTS.maxTokenLength) {
        throw new TesseraError('invalid_token');
      }
      try {
        const { payload } = await jwtVerify(
          token,
          async (header) => {
            const key = await jwks.get(header.kid, header.alg);
            if (!key) throw new TesseraError('invalid_token', 'The token was signed by an unknown key.');
            return key;
          },
          {
            algorithms: config.algorithms,
            issuer: config.issuer,
            audience: config.audience,
            typ: ACCESS_TOKEN_TYPE,
            clockTolerance: config.clockTolerance,
            currentDate: new Date(now()),
            requiredClaims: ['sub', 'exp', 'iat', 'jti', 'sid'],
          },
        );
        if (typeof payload.sid !== 'string' || typeof payload.username !== 'string' || !Array.isArray(payload.roles)) {
          throw new TesseraError('invalid_token');
        }
        if (feed) {
          if (feed.isRevoked(payload.sid)) throw new TesseraError('token_revoked');
          if (failClosed && feed.isStale()) {
            throw new TesseraError('token_revoked', 'Revocations cannot be checked right now (the revocation feed is down).');
          }
        }
        return payload as unknown as AccessTokenClaims;
      } catch (error) {
        if (error instanceof TesseraError) throw error;
        if (error instanceof errors.JWTExpired) throw new TesseraError('token_expired', undefined, { cause: error });
        throw new TesseraError('invalid_token', undefined, { cause: error });
      }
    },
  });
}

function validate(options: VerifierOptions) {
  if (typeof options !== 'object' || options === null) throw new TypeError('createVerifier: options are required');
  for (const name of ['issuer', 'audience', 'jwksUri'] as const) {
    if (typeof options[name] !== 'string' || options[name].length === 0) throw new TypeError(`createVerifier: ${name} is required`);
  }
  let jwksUrl: URL;
  try {
    jwksUrl = new URL(options.jwksUri);
  } catch {
    throw new TypeError(`createVerifier: jwksUri must be an absolute URL, got ${options.jwksUri}`);
  }
  if (jwksUrl.protocol !== 'https:' && jwksUrl.protocol !== 'http:') throw new TypeError('createVerifier: jwksUri must be http(s)');
  const algorithms = options.algorithms ?? VERIFY_DEFAULTS.algorithms;
  if (!Array.isArray(algorithms) || algorithms.length === 0) throw new TypeError('createVerifier: algorithms must be a non-empty array');
  for (const alg of algorithms) {
    if (!SIGNING_ALGORITHMS.includes(alg)) {
      throw new TypeError(`createVerifier: algorithms: ${String(alg)} is not allowed (only ${SIGNING_ALGORITHMS.join(', ')})`);
    }
  }
  const clockTolerance = options.clockTolerance ?? VERIFY_DEFAULTS.clockTolerance;
  if (!Number.isFinite(clockTolerance) || clockTolerance < 0 || clockTolerance > 300) {
    throw new TypeError('createVerifier: clockTolerance must be 0..300 seconds');
  }
  const jwksCooldown = options.jwksCooldown ?? VERIFY_DEFAULTS.jwksCooldownSeconds;
  if (!Number.isFinite(jwksCooldown) || jwksCooldown < 0) throw new TypeError('createVerifier: jwksCooldown must be >= 0 seconds');
  const jwksTimeout = options.jwksTimeout ?? VERIFY_DEFAULTS.jwksTimeoutMs;
  if (!Number.isFinite(jwksTimeout) || jwksTimeout <= 0) throw new TypeError('createVerifier: jwksTimeout must be > 0 ms');
  return Object.freeze({
    issuer: options.issuer,
    audience: options.audience,
    jwksUri: jwksUrl.toString(),
    algorithms: [...algorithms],
    clockTolerance,
    jwksCooldown,
    jwksTimeout,
  });
}
