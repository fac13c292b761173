import { type ErrorBody, TesseraError } from '@tessera/protocol';
import { DPOP_ALGORITHMS } from './dpop_proof.js';

/** The two ways an access token is presented: `Bearer` (RFC 6750) and `DPoP` (RFC 9449 §7.1). */
export type AuthScheme = 'Bearer' | 'DPoP';

/**
 * The token of an `Authorization: Bearer <token>` header. The header must be
 * exactly two parts; anything else (absent included) is `invalid_token`.
 * Knows nothing of DPoP: a verifier's `verifyRequest` reads both schemes.
 */
export function parseBearer(header: string | string[] | null | undefined): string {
  if (typeof header !== 'string') throw new TesseraError('invalid_token', 'An access token is required (Authorization: Bearer <token>).');
  const parts = header.split(' ');
  if (parts.length !== 2 || parts[0]!.toLowerCase() !== 'bearer' || parts[1]!.length === 0) {
    throw new TesseraError('invalid_token', 'The Authorization header must be "Bearer <token>".');
  }
  return parts[1]!;
}

/**
 * The scheme and token of `Authorization: Bearer <token>` or `Authorization: DPoP <token>`
 * (scheme names are case-insensitive). Exactly two parts, one header: anything else is
 * refused, never guessed at: `invalid_token`, or `invalid_request` (400) for a header
 * sent more than once (RFC 6750 §3.1).
 */
export function parseAuthorization(header: string | readonly string[] | null | undefined): { scheme: AuthScheme; token: string } {
  if (Array.isArray(header)) {
    if (header.length > 1) throw new TesseraError('invalid_request', 'More than one Authorization header.');
    return parseAuthorization(header[0]);
  }
  if (typeof header !== 'string') throw new TesseraError('invalid_token', 'An access token is required (Authorization: Bearer <token>, or DPoP <token> with a DPoP proof).');
  const parts = header.split(' ');
  const scheme = parts[0]!.toLowerCase();
  if (parts.length !== 2 || (scheme !== 'bearer' && scheme !== 'dpop') || parts[1]!.length === 0) {
    throw new TesseraError('invalid_token', 'The Authorization header must be "Bearer <token>" or "DPoP <token>".');
  }
  return { scheme: scheme === 'dpop' ? 'DPoP' : 'Bearer', token: parts[1]! };
}

/**
 * The scheme a request tried, for the challenge of its refusal: `DPoP` when its
 * `Authorization` header starts with it, `Bearer` otherwise (none included).
 */
export function authScheme(header: string | readonly string[] | null | undefined): AuthScheme {
  const first = Array.isArray(header) ? header[0] : header;
  return typeof first === 'string' && /^dpop(?: |$)/i.test(first) ? 'DPoP' : 'Bearer';
}

/** The `algs` of the DPoP challenge (RFC 9449 §7.1): the proof algorithms accepted. */
const DPOP_ALGS = `algs="${DPOP_ALGORITHMS.join(' ')}"`;

/**
 * Status, `WWW-Authenticate` and body for a refused request. Both schemes are offered
 * (RFC 9449 §7.2): the challenge of the scheme the request tried (`scheme`; by default
 * `Bearer`, or `DPoP` for a proof refused) comes first and carries the error (RFC 6750
 * §3), with `algs` for DPoP; the other follows bare. E.g.
 * `Bearer error="invalid_token", error_description="…", DPoP algs="ES256 EdDSA"`, or
 * `DPoP error="invalid_dpop_proof", error_description="…", algs="ES256 EdDSA", Bearer`.
 */
export function errorResponse(error: unknown, options: { scheme?: AuthScheme } = {}): { status: number; headers: Record<string, string>; body: ErrorBody } {
  const tessera = error instanceof TesseraError ? error : new TesseraError('internal_error');
  const headers: Record<string, string> = { 'cache-control': 'no-store' };
  const challengeError =
    tessera.code === 'insufficient_scope' || tessera.code === 'invalid_dpop_proof' || tessera.code === 'invalid_request' ? tessera.code : tessera.status === 401 ? 'invalid_token' : undefined;
  if (challengeError !== undefined) {
    const params = `error="${challengeError}", error_description="${quote(tessera.message)}"`;
    const scheme = options.scheme ?? (tessera.code === 'invalid_dpop_proof' ? 'DPoP' : 'Bearer');
    if (tessera.code === 'invalid_request') {
      // RFC 9449 §7.2, Figure 19: which scheme was meant is unclear, so both carry the error.
      headers['www-authenticate'] = `Bearer ${params}, DPoP ${DPOP_ALGS}, ${params}`;
    } else {
      headers['www-authenticate'] = scheme === 'DPoP' ? `DPoP ${params}, ${DPOP_ALGS}, Bearer` : `Bearer ${params}, DPoP ${DPOP_ALGS}`;
    }
  }
  return { status: tessera.status, headers, body: { error: tessera.code, message: tessera.message } };
}

/** `insufficient_scope` unless the claims hold `role`. */
export function checkRole(claims: { roles?: unknown } | undefined, role: string): void {
  if (!claims) throw new TesseraError('invalid_token');
  if (!Array.isArray(claims.roles) || !claims.roles.includes(role)) {
    throw new TesseraError('insufficient_scope', `This needs the "${role}" role.`);
  }
}

// RFC 6750 error_description: printable ASCII without " and \.
function quote(text: string): string {
  return text.replace(/[^\x20-\x7e]|["\\]/g, '');
}
