import { type AccessTokenClaims, TesseraError } from '@tessera/protocol';
import { checkTokenTimes } from './token_times.js';

/**
 * The checks every engine shares, after the signature, `typ`, `iss` and `aud`
 * have passed: times against the verifier's clock (with `tolerance` seconds of
 * leeway, as jose counts it) and the shape of Tessera's own claims. Sharing them
 * is what makes the jose and fast-jwt engines refuse exactly the same tokens.
 */
export function checkAccessClaims(payload: Record<string, unknown>, nowMs: number, tolerance: number): AccessTokenClaims {
  const { sub, jti, sid, username, roles, aud, client_id, cnf } = payload;
  // iss and aud were matched by the engine; both engines also insist on their shape.
  if (!(typeof aud === 'string' || (Array.isArray(aud) && aud.every((a) => typeof a === 'string')))) throw new TesseraError('invalid_token');
  checkTokenTimes(payload, nowMs, tolerance);
  if (typeof sub !== 'string' || typeof jti !== 'string' || typeof sid !== 'string' || typeof username !== 'string') {
    throw new TesseraError('invalid_token');
  }
  if (!Array.isArray(roles) || !roles.every((role) => typeof role === 'string')) throw new TesseraError('invalid_token');
  if (client_id !== undefined && typeof client_id !== 'string') throw new TesseraError('invalid_token');
  // A confirmation (RFC 7800) this verifier cannot check is refused, never ignored: only
  // `{ jkt }` (DPoP, RFC 9449 §6), which `verifyRequest` checks against the request's proof.
  if (cnf !== undefined && !isKeyConfirmation(cnf)) throw new TesseraError('invalid_token', 'The token is bound to a key in a way this verifier does not support.');
  return payload as unknown as AccessTokenClaims;
}

/** `cnf: { jkt }` and nothing else: an RFC 7638 SHA-256 thumbprint (43 base64url characters). */
function isKeyConfirmation(cnf: unknown): cnf is { jkt: string } {
  if (typeof cnf !== 'object' || cnf === null || Array.isArray(cnf)) return false;
  const members = Object.keys(cnf);
  const jkt = (cnf as { jkt?: unknown }).jkt;
  return members.length === 1 && typeof jkt === 'string' && /^[A-Za-z0-9_-]{43}$/.test(jkt);
}
