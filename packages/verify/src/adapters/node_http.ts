import type { AccessTokenClaims } from '@tessera/protocol';
import { authScheme, checkRole, errorResponse } from '../bearer.js';
import type { Verifier } from '../create_verifier.js';
import { headerValues, isTls, type PublicUrl, parsePublicUrl, requestUrl } from '../request_url.js';

/** The parts of `node:http`'s request and response this needs. */
interface IncomingMessage {
  headers: Record<string, string | string[] | undefined>;
  rawHeaders?: string[];
  method?: string;
  url?: string;
  socket?: unknown;
}
interface ServerResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body: string): unknown;
}

export interface AuthenticateOptions {
  /** 403 `insufficient_scope` unless the token has this role. */
  role?: string;
  /**
   * The URL clients reach this server at, e.g. `https://api.example.com` (with a path
   * when a proxy strips it: `https://example.com/api`). DPoP proofs must name it
   * (`htu`). Without it, the URL is built from the `Host` header and whether the
   * connection is TLS: behind a proxy, or in production, set this.
   */
  publicUrl?: string;
}

/**
 * For plain `node:http`: verifies `Authorization: Bearer <token>`, or `DPoP <token>`
 * with its `DPoP` proof for a token bound to a key; resolves to the claims, or answers
 * the request with 401 (or 403 without `role`) and resolves to `null`.
 *
 * @example
 * createServer(async (req, res) => {
 *   const auth = await authenticate(verifier, req, res, { publicUrl: 'https://api.example.com' })
 *   if (!auth) return
 *   res.end(JSON.stringify({ user: auth.username }))
 * })
 * @throws TypeError (a rejection) for a `publicUrl` that cannot be right
 */
export async function authenticate(
  verifier: Verifier,
  req: IncomingMessage,
  res: ServerResponse,
  options: AuthenticateOptions = {},
): Promise<AccessTokenClaims | null> {
  const publicUrl = publicUrlOf(options.publicUrl);
  try {
    const host = req.headers.host ?? req.headers[':authority'];
    const claims = await verifier.verifyRequest({
      authorization: headerValues(req.headers, req.rawHeaders, 'authorization'),
      dpop: headerValues(req.headers, req.rawHeaders, 'dpop'),
      method: req.method ?? '',
      url: requestUrl(publicUrl, isTls(req.socket) ? 'https' : 'http', typeof host === 'string' ? host : undefined, req.url),
    });
    if (options.role !== undefined) checkRole(claims, options.role);
    return claims;
  } catch (error) {
    const { status, headers, body } = errorResponse(error, { scheme: authScheme(req.headers.authorization) });
    res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(body));
    return null;
  }
}

// The options come with every call: each publicUrl is parsed once.
const publicUrls = new Map<string, PublicUrl | undefined>();
function publicUrlOf(publicUrl: string | undefined): PublicUrl | undefined {
  if (publicUrl === undefined) return undefined;
  if (!publicUrls.has(publicUrl)) {
    const parsed = parsePublicUrl(publicUrl, 'authenticate');
    if (publicUrls.size >= 16) publicUrls.clear();
    publicUrls.set(publicUrl, parsed);
  }
  return publicUrls.get(publicUrl);
}
