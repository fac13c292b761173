import type { AccessTokenClaims } from '@tessera/protocol';
import { authScheme, checkRole, errorResponse } from '../bearer.js';
import type { Verifier } from '../create_verifier.js';
import { headerValues, isTls, parsePublicUrl, requestUrl } from '../request_url.js';

/** The parts of Express's (or Connect's) request and response this needs. */
interface Request {
  headers: Record<string, string | string[] | undefined>;
  rawHeaders?: string[];
  method?: string;
  /** The path as received; `url` is relative to the router an app is mounted on. */
  originalUrl?: string;
  url?: string;
  /** Express: `http`/`https`, from `X-Forwarded-Proto` when `trust proxy` trusts the peer. */
  protocol?: string;
  /** Express 5: the Host (with its port), from `X-Forwarded-Host` when `trust proxy` trusts the peer. */
  host?: string;
  socket?: unknown;
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

export interface RequireAuthOptions {
  /**
   * The URL clients reach this app at, e.g. `https://api.example.com` (with a path when
   * a proxy strips it: `https://example.com/api`). DPoP proofs must name it (`htu`).
   * Without it, the URL is `req.protocol://req.host` and the path, which Express takes
   * from the `Host` header, or from `X-Forwarded-Proto`/`-Host` when `trust proxy`
   * trusts the peer. Set it in production: the `Host` header is then not relied on.
   */
  publicUrl?: string;
}

/**
 * Express middleware: verifies `Authorization: Bearer <token>`, or `DPoP <token>` with
 * its `DPoP` proof for a token bound to a key; sets `req.auth` to the claims, or answers
 * 401 with `WWW-Authenticate` (RFC 6750, RFC 9449 §7).
 *
 * @example
 * app.get('/api/profile', requireAuth(verifier), (req, res) => res.json({ user: req.auth.username }))
 * app.get('/api/admin', requireAuth(verifier), requireRole('admin'), handler)
 * app.use('/api', requireAuth(verifier, { publicUrl: 'https://api.example.com' }))   // behind a proxy
 */
export function requireAuth(verifier: Verifier, options: RequireAuthOptions = {}) {
  const publicUrl = parsePublicUrl(options.publicUrl, 'requireAuth');
  return (req: Request, res: Response, next: Next): void => {
    const protocol = req.protocol ?? (isTls(req.socket) ? 'https' : 'http');
    const host = req.host ?? (typeof req.headers.host === 'string' ? req.headers.host : undefined);
    verifier
      .verifyRequest({
        authorization: headerValues(req.headers, req.rawHeaders, 'authorization'),
        dpop: headerValues(req.headers, req.rawHeaders, 'dpop'),
        method: req.method ?? '',
        url: requestUrl(publicUrl, protocol, host, req.originalUrl ?? req.url),
      })
      .then(
        (claims) => {
          req.auth = claims;
          next();
        },
        (error: unknown) => send(req, res, error),
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
      send(req, res, error);
    }
  };
}

function send(req: Request, res: Response, error: unknown): void {
  const { status, headers, body } = errorResponse(error, { scheme: authScheme(req.headers.authorization) });
  res.status(status).set(headers).json(body);
}
