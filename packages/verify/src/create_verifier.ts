import { type AccessTokenClaims, SIGNING_ALGORITHMS, type SigningAlgorithm, TesseraError } from '@tessera/protocol';
import { engine as runtimeEngine } from '#key-verifier';
import { checkAccessClaims } from './access_claims.js';
import { parseAuthorization } from './bearer.js';
import { VERIFY_DEFAULTS } from './defaults.js';
import { type DpopReplayCache, memoryReplayCache, verifyDpopProof } from './dpop_proof.js';
import { JwksCache } from './jwks_cache.js';
import type { KeyVerifier, KeyVerifierEngine } from './key_verifier.js';
import { RevocationFeed } from './revocation_feed.js';
import { tokenHeaderReader } from './token_header.js';
import { VerifiedTokenCache } from './verified_token_cache.js';

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
  /** Seconds before a JWKS fetch is abandoned. Default 5; at most 300. */
  jwksTimeout?: number;
  /** The `fetch` to reach the JWKS with. Default `globalThis.fetch`. */
  fetch?: typeof globalThis.fetch;
  /**
   * Reject tokens of revoked sessions (logout, password change, theft) without a
   * database hit: follow the auth server's revocation feed. Without it, a revoked
   * session's access tokens stay valid until they expire (`--access-ttl`).
   */
  revocation?: RevocationOptions | boolean;
  /**
   * Remember verified tokens by their exact text, so a token presented again skips
   * the signature check (about 10x faster on RS256; see bench/README.md). `true`
   * keeps up to 10,000; a number sets the bound. Off by default. An entry never
   * outlives the token's `exp`, the revocation check still runs on every hit, and
   * the cache is cleared when a key leaves the JWKS. Claims from the cache are
   * frozen objects shared by the requests that present the same token.
   */
  cache?: boolean | number;
  /** Time in ms since the epoch. Default `Date.now`; tests inject a clock. */
  clock?: () => number;
  /** Tokens bound to a key (DPoP, RFC 9449), checked by `verifyRequest`. */
  dpop?: DpopOptions;
}

export interface DpopOptions {
  /**
   * Where proof `jti`s are remembered (120 s each), so a proof is accepted once.
   * Default: `memoryReplayCache()`, one per verifier, in this process: behind a load
   * balancer, a proof replayed to another instance within its 60 s window is not
   * recognised there unless the instances share a cache (e.g. over Redis). A cache that
   * throws fails the request (500), never admits it.
   */
  replay?: DpopReplayCache;
}

/** What `verifyRequest` needs of a request: its credentials and what a DPoP proof must name. */
export interface RequestCredentials {
  /** The `Authorization` header: `Bearer <token>` or `DPoP <token>`; an array when sent more than once (refused). */
  authorization: string | readonly string[] | null | undefined;
  /** The `DPoP` header (the proof); an array, or values joined by a comma, when sent more than once (refused). */
  dpop?: string | readonly string[] | null | undefined;
  /** The request method, as sent (`GET`): the proof's `htm`. */
  method: string;
  /**
   * The absolute URL the client addressed (`https://api.example.com/orders?page=2`): the
   * proof's `htu` (query and fragment are ignored). `undefined` when it cannot be known
   * (no `Host` header): DPoP requests are then refused.
   */
  url: string | undefined;
}

export interface RevocationOptions {
  /** The feed. Default `<issuer>/auth/revocations`. */
  url?: string;
  /** The auth server's `--feed-secret`, when it has one: sent as `Authorization: Bearer <secret>`. */
  secret?: string;
  /**
   * Seconds without news from the feed (it sends a heartbeat every 10 s while
   * streaming; a poll that reaches the end of the feed counts too) before it counts
   * as down. Default 30.
   */
  maxStaleness?: number;
  /**
   * `true` (the default) follows the event stream: a logout arrives in milliseconds.
   * `false` only pages the JSON feed every `pollInterval` seconds (for runtimes that cannot
   * hold a stream open). A streaming verifier the server refuses (its stream caps are
   * full) pages the JSON feed until it can stream again.
   */
  stream?: boolean;
  /** Seconds between pages of the JSON feed while not streaming. Default 1; 0.1 to 300. */
  pollInterval?: number;
  /**
   * While the feed is down: `'reject'` (the default, fail closed) refuses every
   * token with `token_revoked`, since revocations may be missed; `'accept'` serves
   * tokens until they expire, as if there were no feed.
   */
  whenStale?: 'reject' | 'accept';
}

/** A verifier: one per auth server, created at start-up and shared by every request. */
export interface Verifier {
  /** Which engine checks signatures: `fast-jwt` (node:crypto) on Node, `jose` (WebCrypto) elsewhere. */
  readonly engine: 'jose' | 'fast-jwt';
  /**
   * Verifies an access token presented as a bearer token. Resolves to its claims;
   * rejects with a `TesseraError` whose `code` is `invalid_token`, `token_expired` or
   * `token_revoked`. A token bound to a key (DPoP) is refused (`invalid_token`): without
   * its proof it proves nothing; use `verifyRequest`.
   */
  verify(token: string): Promise<AccessTokenClaims>;
  /**
   * Verifies the access token of a request, as the framework adapters do: an unbound
   * token as `Authorization: Bearer <token>`; a token bound to a key (`cnf.jkt`) only as
   * `Authorization: DPoP <token>` with a `DPoP` proof of this request (RFC 9449 §7: its
   * `htm`/`htu` name this method and URL, its `ath` is the token's hash, it is signed by
   * the bound key, issued within 60 s, and its `jti` is new). A bound token sent as
   * `Bearer`, or an unbound one as `DPoP`, is `invalid_token`; a missing, malformed,
   * repeated or replayed proof is `invalid_dpop_proof`; two `Authorization` headers are
   * `invalid_request`. Otherwise the codes of `verify`.
   */
  verifyRequest(request: RequestCredentials): Promise<AccessTokenClaims>;
  /**
   * Fetches the JWKS and, when on, reads the revocation feed to its end, e.g. at
   * start-up: once it resolves, every revocation made before it is refused. Rejects
   * when either does not answer within `jwksTimeout`, or when the feed is not read
   * within `maxStaleness` (the feed keeps trying).
   */
  prefetch(): Promise<void>;
  /**
   * How the revocation feed is followed right now (`undefined` without `revocation`):
   * streaming or paging the JSON feed, whether it has been read to its end yet, how
   * many revoked sessions are remembered, and whether the feed counts as down. For a
   * health endpoint.
   */
  revocationStatus(): { mode: 'stream' | 'poll'; caughtUp: boolean; remembered: number; stale: boolean } | undefined;
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
  return createVerifierWith(runtimeEngine, options);
}

/** `createVerifier` with a chosen engine: how the tests run both engines on Node. */
export function createVerifierWith(engine: KeyVerifierEngine, options: VerifierOptions): Verifier {
  const config = validate(options);
  const now = options.clock ?? Date.now;
  const fetch = options.fetch ?? globalThis.fetch.bind(globalThis);
  const cache = config.cache > 0 ? new VerifiedTokenCache(config.cache) : undefined;
  // Bumped whenever a key leaves or changes: a check that began under an older key set
  // must not put its token in the cache (it was cleared after the check began).
  let keyGeneration = 0;
  const jwks = new JwksCache({
    jwksUri: config.jwksUri,
    algorithms: config.algorithms,
    engine,
    policy: { issuer: config.issuer, audience: config.audience, clockTolerance: config.clockTolerance },
    fetch,
    now,
    cooldownMs: config.jwksCooldown * 1000,
    timeoutMs: config.jwksTimeout * 1000,
    onKeysChanged: () => {
      keyGeneration += 1;
      cache?.clear();
    },
  });

  const feedOptions = validateRevocation(options.revocation);
  const feed = feedOptions
    ? new RevocationFeed({
        url: feedOptions.url ?? `${config.issuer.replace(/\/+$/, '')}/auth/revocations`,
        fetch,
        now,
        maxStaleness: feedOptions.maxStaleness ?? VERIFY_DEFAULTS.maxStalenessSeconds,
        secret: feedOptions.secret,
        stream: feedOptions.stream ?? true,
        pollIntervalMs: (feedOptions.pollInterval ?? VERIFY_DEFAULTS.pollIntervalSeconds) * 1000,
      })
    : undefined;
  const failClosed = feedOptions?.whenStale !== 'accept';
  feed?.start();
  const replay = validateDpop(options.dpop);

  // Every token of one key shares its header segment: kid and alg are read once per segment.
  const headerOf = tokenHeaderReader();

  function fail(error: unknown): never {
    if (error instanceof TesseraError) throw error;
    if (engine.isExpired(error)) throw new TesseraError('token_expired', undefined, { cause: error });
    throw new TesseraError('invalid_token', undefined, { cause: error });
  }

  /** The revocation check, on every token, cached or not; and a bound token only where its proof is checked. */
  function admit(claims: AccessTokenClaims, bound: Bound): AccessTokenClaims {
    if (bound === 'refuse' && claims.cnf !== undefined) throw new TesseraError('invalid_token', BOUND_AS_BEARER);
    if (feed) {
      if (feed.isRevoked(claims.sid)) throw new TesseraError('token_revoked');
      if (failClosed && feed.isStale()) {
        throw new TesseraError('token_revoked', 'Revocations cannot be checked right now (the revocation feed is down).');
      }
    }
    return claims;
  }

  function accept(token: string, payload: Record<string, unknown>, nowMs: number, generation: number, bound: Bound): AccessTokenClaims {
    const claims = checkAccessClaims(payload, nowMs, config.clockTolerance);
    return admit(cache && generation === keyGeneration ? cache.set(token, claims, nowMs) : claims, bound);
  }

  async function verifyWithFetchedKey(token: string, kid: string, alg: string, nowMs: number, bound: Bound): Promise<AccessTokenClaims> {
    const generation = keyGeneration;
    const key = await jwks.get(kid, alg);
    if (!key) throw new TesseraError('invalid_token', 'The token was signed by an unknown key.');
    let payload: Record<string, unknown>;
    try {
      payload = await key.verify(token, nowMs);
    } catch (error) {
      fail(error);
    }
    return accept(token, payload, nowMs, generation, bound);
  }

  // Not an async function: with a known key on the Node engine, the whole check
  // runs synchronously and only the result is wrapped in a promise.
  function verifyToken(token: string, bound: Bound): Promise<AccessTokenClaims> {
    try {
      if (typeof token !== 'string' || token.length === 0 || token.length > VERIFY_DEFAULTS.maxTokenLength) {
        throw new TesseraError('invalid_token');
      }
      const nowMs = now();
      const hit = cache?.get(token, nowMs);
      if (hit !== undefined) {
        jwks.revalidate(); // so that a retired key is noticed (and the cache cleared) even when every token is a hit
        return Promise.resolve(admit(hit, bound));
      }
      const { kid, alg } = headerOf(token);
      const generation = keyGeneration;
      const key: KeyVerifier | undefined = jwks.peek(kid, alg);
      if (key === undefined) return verifyWithFetchedKey(token, kid, alg, nowMs, bound);
      let result: ReturnType<KeyVerifier['verify']>;
      try {
        result = key.verify(token, nowMs);
      } catch (error) {
        fail(error);
      }
      if (result instanceof Promise) return result.then((payload) => accept(token, payload, nowMs, generation, bound), fail);
      return Promise.resolve(accept(token, result, nowMs, generation, bound));
    } catch (error) {
      return Promise.reject(error);
    }
  }

  function verifyRequest(request: RequestCredentials): Promise<AccessTokenClaims> {
    let presented: ReturnType<typeof parseAuthorization>;
    try {
      if (typeof request !== 'object' || request === null) throw new TypeError('verifyRequest: a request is required');
      presented = parseAuthorization(request.authorization);
    } catch (error) {
      return Promise.reject(error);
    }
    const { scheme, token } = presented;
    // RFC 9449 §7.2: a bound token sent as Bearer is refused (admit); the DPoP header of
    // a Bearer request is not looked at: an unbound token needs no proof.
    if (scheme === 'Bearer') return verifyToken(token, 'refuse');
    return verifyToken(token, 'allow').then(async (claims) => {
      const jkt = claims.cnf?.jkt;
      // The proof could only show the key of a token that names none: refused, so a
      // client never believes it has a sender-constrained token when it has not.
      if (jkt === undefined) throw new TesseraError('invalid_token', 'This token is not bound to a key: send it as Authorization: Bearer <token>.');
      const proof = singleProof(request.dpop);
      if (proof !== undefined && typeof request.url !== 'string') refuseProof('the URL of this request is unknown (no Host header)');
      await verifyDpopProof({
        proof,
        method: request.method,
        url: request.url ?? '',
        accessToken: token,
        expectedJkt: jkt,
        now: now(),
        replay,
      });
      return claims;
    });
  }

  return Object.freeze({
    engine: engine.name,
    async prefetch() {
      await Promise.all([jwks.refresh(), feed && feedReady(feed, config.jwksTimeout * 1000, (feedOptions?.maxStaleness ?? VERIFY_DEFAULTS.maxStalenessSeconds) * 1000)]);
    },
    close() {
      feed?.close();
    },
    revocationStatus() {
      return feed && { mode: feed.mode, caughtUp: feed.caughtUp, remembered: feed.size, stale: feed.isStale() };
    },
    verify: (token: string) => verifyToken(token, 'refuse'),
    verifyRequest,
  });
}

/** Whether a token bound to a key may pass: only where its proof is checked next. */
type Bound = 'allow' | 'refuse';

const BOUND_AS_BEARER = 'This token is bound to a key: send it as Authorization: DPoP <token>, with a DPoP proof.';

function refuseProof(why: string): never {
  throw new TesseraError('invalid_dpop_proof', `DPoP proof refused: ${why}.`);
}

/**
 * The one `DPoP` header of a request (RFC 9449 §4.3: not more than one). Node and
 * Fetch join a repeated header with a comma, which a compact JWS never holds.
 */
function singleProof(header: RequestCredentials['dpop']): string | undefined {
  let value: string | null | undefined;
  if (Array.isArray(header)) {
    if (header.length > 1) refuseProof('more than one DPoP header');
    value = header[0];
  } else {
    value = header as string | null | undefined;
  }
  if (value === null || value === undefined) return undefined;
  if (typeof value !== 'string') refuseProof('not a compact JWS');
  if (value.includes(',')) refuseProof('more than one DPoP header');
  return value;
}

function validateDpop(dpop: VerifierOptions['dpop']): DpopReplayCache {
  if (dpop === undefined) return memoryReplayCache();
  if (typeof dpop !== 'object' || dpop === null) throw new TypeError('createVerifier: dpop must be an object');
  if (dpop.replay === undefined) return memoryReplayCache();
  if (typeof dpop.replay !== 'object' || dpop.replay === null || typeof dpop.replay.remember !== 'function') {
    throw new TypeError('createVerifier: dpop.replay must be a replay cache (remember(key, ttlMs, now))');
  }
  return dpop.replay;
}

/**
 * The feed read to its end for the first time; a rejection when the server has not
 * answered within `answerMs`, or the feed was not read within `readMs` (the feed keeps trying).
 */
async function feedReady(feed: RevocationFeed, answerMs: number, readMs: number): Promise<void> {
  const timers: ReturnType<typeof setTimeout>[] = [];
  let answered = false;
  void feed.answered().then(() => {
    answered = true;
  });
  const timeout = new Promise<never>((_, reject) => {
    timers.push(
      setTimeout(() => {
        if (!answered) reject(new Error(`the revocation feed did not answer within ${answerMs} ms`));
      }, answerMs),
      setTimeout(() => reject(new Error(`the revocation feed was not read to its end within ${readMs} ms`)), readMs),
    );
  });
  try {
    await Promise.race([feed.ready(), timeout]);
  } finally {
    for (const timer of timers) clearTimeout(timer);
  }
}

function validateRevocation(revocation: VerifierOptions['revocation']): RevocationOptions | undefined {
  if (revocation === undefined || revocation === false) return undefined;
  if (revocation === true) return {};
  if (typeof revocation !== 'object' || revocation === null) throw new TypeError('createVerifier: revocation must be true or an object');
  const { url, secret, maxStaleness, pollInterval } = revocation;
  if (url !== undefined) {
    try {
      new URL(url);
    } catch {
      throw new TypeError(`createVerifier: revocation.url must be an absolute URL, got ${String(url)}`);
    }
  }
  if (secret !== undefined && (typeof secret !== 'string' || secret.length === 0)) throw new TypeError('createVerifier: revocation.secret must be a non-empty string');
  // The server sends a heartbeat every 10 s: a shorter bound would count a quiet, healthy feed as down.
  if (maxStaleness !== undefined && (!Number.isFinite(maxStaleness) || maxStaleness < 15)) throw new TypeError('createVerifier: revocation.maxStaleness must be >= 15 seconds (heartbeats come every 10 s)');
  checkSeconds('revocation.pollInterval', pollInterval, 0.1);
  return revocation;
}

/**
 * Every duration of the verifier is in seconds. Anything above 300 is refused rather
 * than taken: it is almost surely milliseconds (`jwksTimeout: 5000`), and waiting
 * 83 minutes for a JWKS would be the silent failure that unit mix-ups cause.
 */
function checkSeconds(name: string, value: number | undefined, min: number): void {
  if (value === undefined) return;
  if (!Number.isFinite(value) || value < min || value > 300) {
    throw new TypeError(`createVerifier: ${name} is in seconds, ${min} to 300; got ${String(value)}${Number(value) > 300 ? ' (milliseconds?)' : ''}`);
  }
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
  const jwksTimeout = options.jwksTimeout ?? VERIFY_DEFAULTS.jwksTimeoutSeconds;
  checkSeconds('jwksTimeout', jwksTimeout, 0.001);
  const cache = options.cache === true ? VERIFY_DEFAULTS.cacheSize : options.cache === false || options.cache === undefined ? 0 : options.cache;
  if (!Number.isSafeInteger(cache) || cache < 0) throw new TypeError('createVerifier: cache must be a boolean or a non-negative integer');
  return Object.freeze({
    cache,
    issuer: options.issuer,
    audience: options.audience,
    jwksUri: jwksUrl.toString(),
    algorithms: [...algorithms],
    clockTolerance,
    jwksCooldown,
    jwksTimeout,
  });
}
