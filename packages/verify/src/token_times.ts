import { TesseraError } from '@tessera/protocol';

const isNumber = (value: unknown): value is number => typeof value === 'number' && Number.isFinite(value);

/**
 * A token's times against the verifier's clock (`nowMs`), with `toleranceSeconds` of
 * leeway counted as jose counts it: `exp` and `iat` are numbers, `nbf` (when present)
 * is a number that has passed, and `exp` has not. An expired token is
 * `token_expired`; anything else wrong is `invalid_token`.
 *
 * The engines leave times to this (fast-jwt's clock is fixed when a verifier is
 * made); the auth server checks its own tokens with it too.
 */
export function checkTokenTimes(payload: Record<string, unknown>, nowMs: number, toleranceSeconds: number): void {
  const now = Math.floor(nowMs / 1000);
  const { exp, iat, nbf } = payload;
  if (!isNumber(exp) || !isNumber(iat)) throw new TesseraError('invalid_token', undefined, { cause: new Error('exp and iat must be numbers') });
  if (nbf !== undefined && (!isNumber(nbf) || nbf > now + toleranceSeconds)) {
    throw new TesseraError('invalid_token', undefined, { cause: new Error('not valid yet') });
  }
  if (exp <= now - toleranceSeconds) throw new TesseraError('token_expired', undefined, { cause: new Error('expired') });
}
