import type { AccessTokenClaims } from '@tessera/protocol';
import { checkRole, errorResponse, parseBearer } from '../bearer.js';
import type { Verifier } from '../create_verifier.js';

/** The parts of `node:http`'s request and response this needs. */
interface IncomingMessage {
  headers: Record<string, string | string[] | undefined>;
}
interface ServerResponse {
  writeHead(status: number, headers: Record<string, string>): unknown;
  end(body: string): unknown;
}

/**
 * For plain `node:http`: resolves to the claims, or answers the request with 401
 * (or 403 without `role`) and resolves to `null`.
 *
 * @example
 * createServer(async (req, res) => {
 *   const auth = await authenticate(verifier, req, res)
 *   if (!auth) return
 *   res.end(JSON.stringify({ user: auth.username }))
 * })
 */
export async function authenticate(
  verifier: Verifier,
  req: IncomingMessage,
  res: ServerResponse,
  options: { role?: string } = {},
): Promise<AccessTokenClaims | null> {
  try {
    const claims = await verifier.verify(parseBearer(req.headers.authorization));
    if (options.role !== undefined) checkRole(claims, options.role);
    return claims;
  } catch (error) {
    const { status, headers, body } = errorResponse(error);
    res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8' });
    res.end(JSON.stringify(body));
    return null;
  }
}
