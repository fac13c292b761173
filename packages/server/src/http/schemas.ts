import { ERROR_CODES, type ErrorCode, errorCodes } from '@tessera/protocol';

/** Shared schemas, registered once with `addSchema`; routes point at them by `$id`. */
export const SHARED_SCHEMAS = [
  {
    $id: 'ErrorBody',
    type: 'object',
    description: 'Every error: a stable code from the contract and a sentence for people.',
    properties: {
      error: { type: 'string', enum: errorCodes },
      message: { type: 'string' },
    },
    required: ['error', 'message'],
  },
  {
    $id: 'TokenPair',
    type: 'object',
    description: 'Lifetimes in seconds. In cookie mode refresh_token is left out (it is in the httpOnly cookie).',
    properties: {
      access_token: { type: 'string' },
      refresh_token: { type: 'string' },
      token_type: { type: 'string', enum: ['Bearer'] },
      expires_in: { type: 'integer' },
      refresh_expires_in: { type: 'integer' },
      session_id: { type: 'string', format: 'uuid' },
    },
    required: ['access_token', 'token_type', 'expires_in', 'refresh_expires_in', 'session_id'],
  },
  {
    $id: 'Credentials',
    type: 'object',
    properties: {
      username: { type: 'string', minLength: 1, maxLength: 256 },
      password: { type: 'string', maxLength: 4096 },
      use_cookie: {
        type: 'boolean',
        description: 'Put the refresh token in an httpOnly, SameSite=Strict cookie scoped to /auth instead of the body.',
      },
    },
    required: ['username', 'password'],
    additionalProperties: false,
  },
] as const;

/**
 * Error responses of a route, one entry per status, each listing its codes, so
 * the OpenAPI description shows every code a route can answer with. Every route can
 * answer `invalid_request` (a bad URL, a body that is not JSON) and `internal_error`.
 */
export function errorResponses(...codes: ErrorCode[]): Record<number, unknown> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set<ErrorCode>(['invalid_request', ...codes, 'internal_error'])) {
    const status = ERROR_CODES[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [status, { description: list.join(', '), $ref: 'ErrorBody#' }]),
  );
}

export const TOKEN_ERRORS: ErrorCode[] = ['invalid_token', 'token_expired', 'token_revoked'];

export const bearerSecurity = [{ bearer: [] }];
