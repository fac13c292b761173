import type { AccessTokenClaims } from '@tessera/protocol';
import { checkRole, errorResponse, parseBearer } from '../bearer.js';
import type { Verifier } from '../create_verifier.js';

/** The parts of Express's (or Connect's) request and response this needs. */
interface Request {
  headers: Record<string, string | string[] | undefined>;
  auth?: AccessTokenClaims;
}
interface Response {
  status(code: number): Response;
  set(headers: Record<string, string>): Response;
  json(body: unknown): unknown;
}
type Next = (error?: unknown) => void;

// Express apps written in TypeScript see `req.auth` on their own Request type (with
// @types/express, Express's Request extends this global one; without it, this is inert).
declare global {
  namespace Express {
    interface Request {
      /** The verified access token's claims, set by `requireAuth`. */
      auth?: AccessTokenClaims;
    }
  }
}

/**
 * Express middleware: verifies `Authorization: Bearer`, sets `req.auth` to the
 * claims, or answers 401 with `WWW-Authenticate` (RFC 6750).
 *
 * @example
 * app.get('/api/profile', requireAuth(verifier), (req, res) => res.json({ user: req.auth.username }))
 * app.get('/api/admin', requireAuth(verifier), requireRole('admin'), handler)
 */
export function requireAuth(verifier: Verifier) {
  return (req: Request, res: Response, next: Next): void => {
    let token: string;
    try {
      token = parseBearer(req.headers.authorization);
    } catch (error) {
      send(res, error);
      return;
    }
    verifier.verify(token).then(
      (claims) => {
        req.auth = claims;
        next();
      },
      (error: unknown) => send(res, error),
    );
  };
}

/** After `requireAuth`: 403 `insufficient_scope` unless the token has `role`. */
export function requireRole(role: string) {
  return (req: Request, res: Response, next: Next): void => {
    try {
      checkRole(req.auth, role);
      next();
    } catch (error) {
      send(res, error);
    }
  };
}

function send(res: Response, error: unknown): void {
  const { status, headers, body } = errorResponse(error);
  res.status(status).set(headers).json(body);
}
