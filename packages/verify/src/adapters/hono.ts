import type { AccessTokenClaims } from '@tessera/protocol';
import type { Context, MiddlewareHandler } from 'hono';
import { authScheme, checkRole, errorResponse } from '../bearer.js';
import type { Verifier } from '../create_verifier.js';
import { parsePublicUrl, requestUrl } from '../request_url.js';

/** Hono variables set by `requireAuth`: `c.get('auth')`. */
export type TesseraVariables = { auth: AccessTokenClaims };

export interface RequireAuthOptions {
  /**
   * The URL clients reach this app at, e.g. `https://api.example.com` (with a path when
   * a proxy strips it: `https://example.com/api`). DPoP proofs must name it (`htu`).
   * Without it, the URL is `c.req.url` as the runtime reports it (on Node, built from
   * the `Host` header and whether the connection is TLS: behind a proxy, set this).
   */
  publicUrl?: string;
}

/**
 * Hono middleware: verifies `Authorization: Bearer <token>`, or `DPoP <token>` with its
 * `DPoP` proof for a token bound to a key; sets `c.get('auth')`, or answers 401 with
 * `WWW-Authenticate` (RFC 6750, RFC 9449 §7). Runs on any runtime Hono does.
 *
 * @example
 * const app = new Hono<{ Variables: TesseraVariables }>()
 * app.get('/api/profile', requireAuth(verifier), (c) => c.json({ user: c.get('auth').username }))
 */
export function requireAuth(verifier: Verifier, options: RequireAuthOptions = {}): MiddlewareHandler<{ Variables: TesseraVariables }> {
  const publicUrl = parsePublicUrl(options.publicUrl, 'requireAuth');
  return async (c, next) => {
    try {
      c.set(
        'auth',
        await verifier.verifyRequest({
          // Fetch headers join a repeated header with ", ": two Authorization headers do not
          // parse, and two DPoP headers are refused as such.
          authorization: c.req.header('authorization'),
          dpop: c.req.header('dpop'),
          method: c.req.method,
          url: requestUrl(publicUrl, undefined, undefined, c.req.url),
        }),
      );
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
  const { status, headers, body } = errorResponse(error, { scheme: authScheme(c.req.header('authorization')) });
  return c.json(body, status as 401, headers);
}
