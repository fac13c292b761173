import { type ErrorBody, TesseraError } from '@tessera/protocol';

/**
 * The token of an `Authorization: Bearer <token>` header. The header must be
 * exactly two parts; anything else (absent included) is `invalid_token`.
 */
export function parseBearer(header: string | string[] | null | undefined): string {
  if (typeof header !== 'string') throw new TesseraError('invalid_token', 'An access token is required (Authorization: Bearer <token>).');
  const parts = header.split(' ');
  if (parts.length !== 2 || parts[0]!.toLowerCase() !== 'bearer' || parts[1]!.length === 0) {
    throw new TesseraError('invalid_token', 'The Authorization header must be "Bearer <token>".');
  }
  return parts[1]!;
}

/** Status, `WWW-Authenticate` (RFC 6750 §3) and body for a refused request. */
export function errorResponse(error: unknown): { status: number; headers: Record<string, string>; body: ErrorBody } {
  const tessera = error instanceof TesseraError ? error : new TesseraError('internal_error');
  const headers: Record<string, string> = { 'cache-control': 'no-store' };
  if (tessera.status === 401) headers['www-authenticate'] = `Bearer error="invalid_token", error_description="${quote(tessera.message)}"`;
  if (tessera.code === 'insufficient_scope') headers['www-authenticate'] = `Bearer error="insufficient_scope", error_description="${quote(tessera.message)}"`;
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
