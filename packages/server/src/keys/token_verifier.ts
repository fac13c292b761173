import { KeyObject } from 'node:crypto';
import { TesseraError } from '@tessera/protocol';
import { checkTokenTimes, tokenHeaderReader } from '@tessera/verify';
import { createVerifier } from 'fast-jwt';
import type { CryptoKey } from 'jose';
import type { KeyRing } from './key_ring.js';

/** What a token must be, besides signed by a key of the ring. */
export interface TokenExpectation {
  typ: string;
  issuer: string;
  audience: string;
  /** The caller's clock, in milliseconds. */
  now: number;
}

/** Seconds of leeway on `exp` and `nbf` (jose's `clockTolerance`, counted the same way). */
export const CLOCK_TOLERANCE_SECONDS = 5;

// iss and aud too: fast-jwt matches them only when present (jose requires them when it is told what to expect).
const REQUIRED_CLAIMS = ['iss', 'aud', 'sub', 'exp', 'iat', 'jti', 'sid'];

/**
 * One synchronous fast-jwt verifier per public key and expectation (typ, issuer,
 * audience: a handful per key). On WebCrypto each verify is a job handed to libuv's
 * pool and back, and in a refresh profile that hand-off cost the event loop more
 * than signing both new tokens; `crypto.verify` in place costs 40-70 µs for every
 * algorithm the ring allows (RSA verification is cheap, unlike RSA signing).
 */
const checkers = new WeakMap<CryptoKey, Map<string, (token: string) => Record<string, unknown>>>();

/** Headers by the exact text of their segment (a handful of entries: one per key and type). */
const headerOf = tokenHeaderReader();

/**
 * Verifies a token against the key ring and returns its claims: the key is found
 * by `kid` in the ring only and must be of the header's `alg` (the ring's
 * allow-list), no `crit` extension is understood, then the signature, `typ`, `iss`,
 * `aud` and the required claims (fast-jwt), then `exp`/`nbf` against the caller's
 * clock. Throws `token_expired` for an expired token and `invalid_token` for
 * anything else, with the reason as the error's `cause` (for the log only).
 */
export function verifySignedToken(ring: KeyRing, token: string, expect: TokenExpectation): Record<string, unknown> {
  // From plain JavaScript (the exported flows), anything may come here.
  if (typeof token !== 'string') throw new TesseraError('invalid_token', undefined, { cause: new Error('the token is not a string') });
  const key = ring.verificationKey(headerOf(token));
  if (!key) throw new TesseraError('invalid_token', undefined, { cause: new Error('unknown kid, or alg not that of the key') });
  let byExpectation = checkers.get(key.key);
  if (!byExpectation) {
    byExpectation = new Map();
    checkers.set(key.key, byExpectation);
  }
  const name = `${key.alg}\0${expect.typ}\0${expect.issuer}\0${expect.audience}`;
  let check = byExpectation.get(name);
  if (!check) {
    const verify = createVerifier({
      key: KeyObject.from(key.key).export({ type: 'spki', format: 'pem' }) as string,
      algorithms: [key.alg],
      allowedIss: expect.issuer,
      allowedAud: expect.audience,
      checkTyp: expect.typ,
      requiredClaims: REQUIRED_CLAIMS,
      // Times are checked below against the caller's clock (fast-jwt's is fixed at creation).
      ignoreExpiration: true,
      ignoreNotBefore: true,
      cache: false,
    });
    check = (token) => verify(token) as Record<string, unknown>;
    byExpectation.set(name, check);
  }
  let payload: Record<string, unknown>;
  try {
    payload = check(token);
  } catch (error) {
    throw new TesseraError('invalid_token', undefined, { cause: error });
  }
  checkTokenTimes(payload, expect.now, CLOCK_TOLERANCE_SECONDS);
  return payload;
}
