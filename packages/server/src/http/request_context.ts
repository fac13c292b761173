import { TesseraError } from '@tessera/protocol';
import type { FastifyRequest } from 'fastify';
import type { AccessCredential } from '../flows/authenticate.js';
import type { DpopRequest } from '../flows/dpop_binding.js';
import type { ClientInfo } from '../store/records.js';

/** Where a request came from (IP respects `trustProxy`), bounded in size for the database. */
export function clientInfo(request: FastifyRequest): ClientInfo {
  const ua = request.headers['user-agent'];
  return { ip: request.ip ?? null, userAgent: typeof ua === 'string' ? ua.slice(0, 512) : null };
}

/**
 * The token of `Authorization: Bearer <token>`, or `undefined` when there is no
 * such header. The header must be exactly two parts: anything else is refused,
 * never guessed at.
 */
export function bearerToken(request: FastifyRequest): string | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const parts = header.split(' ');
  if (parts.length !== 2 || parts[0]!.toLowerCase() !== 'bearer' || parts[1]!.length === 0) {
    throw new TesseraError('invalid_token', 'The Authorization header must be "Bearer <token>".');
  }
  return parts[1];
}

/**
 * The access token of `Authorization: Bearer <token>` or `Authorization: DPoP <token>`,
 * with what a DPoP proof is checked against; `undefined` without the header.
 */
export function accessCredential(request: FastifyRequest, issuer: string): AccessCredential | undefined {
  const header = request.headers.authorization;
  if (header === undefined) return undefined;
  const parts = header.split(' ');
  const scheme = parts[0]?.toLowerCase();
  if (parts.length !== 2 || (scheme !== 'bearer' && scheme !== 'dpop') || parts[1]!.length === 0) {
    throw new TesseraError('invalid_token', 'The Authorization header must be "Bearer <token>" or "DPoP <token>".');
  }
  return { token: parts[1]!, scheme, dpop: dpopRequest(request, issuer), client: clientInfo(request) };
}

/** Like `accessCredential`, but a missing header is `invalid_token`. */
export function requireAccessCredential(request: FastifyRequest, issuer: string): AccessCredential {
  const credential = accessCredential(request, issuer);
  if (!credential) throw new TesseraError('invalid_token', 'An access token is required (Authorization: Bearer <token>, or DPoP <token> with a proof).');
  return credential;
}

/**
 * The request as a DPoP proof must name it: method, and the URL under the issuer (the
 * address clients use, whatever proxy is in front). Two DPoP headers are an array: refused.
 */
export function dpopRequest(request: FastifyRequest, issuer: string): DpopRequest {
  return { proof: request.headers.dpop, method: request.method, url: `${originOf(issuer)}${pathOf(request.url)}` };
}

/**
 * The path of a request target, without its query, in origin form (`/auth/refresh?x`)
 * or absolute form (`http://host/auth/refresh`, RFC 9112 §3.2.2), which Node keeps in
 * `request.url` as sent and the router serves by its path.
 */
export function pathOf(target: string): string {
  if (target.startsWith('/')) {
    const query = target.indexOf('?');
    return query === -1 ? target : target.slice(0, query);
  }
  try {
    return new URL(target).pathname;
  } catch {
    return target.split('?')[0]!;
  }
}

/** The issuer's origin, parsed once per issuer (it is the same string on every request). */
let lastIssuer = '';
let lastOrigin = '';
function originOf(issuer: string): string {
  if (issuer !== lastIssuer) {
    lastOrigin = new URL(issuer).origin;
    lastIssuer = issuer;
  }
  return lastOrigin;
}

/** Like `bearerToken`, but a missing header is `invalid_token`. */
export function requireBearerToken(request: FastifyRequest): string {
  const token = bearerToken(request);
  if (token === undefined) throw new TesseraError('invalid_token', 'An access token is required (Authorization: Bearer <token>).');
  return token;
}
