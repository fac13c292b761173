import type { AccessTokenClaims } from '@tessera/protocol';
import type { Context, MiddlewareHandler } from 'hono';
import { checkRole, errorResponse, parseBearer } from '../bearer.js';
import type { Verifier } from '../create_verifier.js';

/** Hono variables set by `requireAuth`: `c.get('auth')`. */
export type TesseraVariables = { auth: AccessTokenClaims };

/**
 * Hono middleware: verifies `Authorization: Bearer`, sets `c.get('auth')`, or
 * answers 401 with `WWW-Authenticate` (RFC 6750). Runs on any runtime Hono does.
 *
 * @example
 * const app = new Hono<{ Variables: TesseraVariables }>()
 * app.get('/api/profile', requireAuth(verifier), (c) => c.json({ user: c.get('auth').username }))
 */
export function requireAuth(verifier: Verifier): MiddlewareHandler<{ Variables: TesseraVariables }> {
  return async (c, next) => {
    try {
      c.set('auth', await verifier.verify(parseBearer(c.req.header('authorization'))));
    } catch (error) {
      return send(c, error);
    }
    await next();
  };
}

/** After `requireAuth`: 403 `insufficient_scope` unless the token has `role`. */
export function requireRole(role: string): MiddlewareHandler<{ Variables: TesseraVariables }> {
  return async (c, next) => {
    try {
      checkRole(c.get('auth'), role);
    } catch (error) {
      return send(c, error);
    }
    await next();
  };
}

function send(c: Context, error: unknown): Response {
  const { status, headers, body } = errorResponse(error);
  return c.json(body, status as 401, headers);
}
