import { TesseraError } from '@tessera/protocol';
import type { FastifyRequest } from 'fastify';
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

/** Like `bearerToken`, but a missing header is `invalid_token`. */
export function requireBearerToken(request: FastifyRequest): string {
  const token = bearerToken(request);
  if (token === undefined) throw new TesseraError('invalid_token', 'An access token is required (Authorization: Bearer <token>).');
  return token;
}
