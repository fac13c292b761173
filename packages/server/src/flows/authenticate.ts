import { ACCESS_TOKEN_TYPE, type AccessTokenClaims, TesseraError } from '@tessera/protocol';
import { verifyToken } from '../keys/tokens.js';
import type { SessionRecord, UserRecord } from '../store/records.js';
import type { AuthContext } from './context.js';

/** The caller behind a valid access token. */
export interface Authenticated {
  claims: AccessTokenClaims;
  user: UserRecord;
  session: SessionRecord;
}

/**
 * Checks an access token as a resource server would, then what only the auth
 * server can: that its session is still live and its user still enabled.
 */
export async function authenticate(ctx: AuthContext, token: string): Promise<Authenticated> {
  const claims = await verifyAccessToken(ctx, token);
  const found = await ctx.store.sessions.findWithUser(claims.sid);
  if (!found) throw new TesseraError('invalid_token');
  if (found.session.revokedAt || !found.user || found.user.disabledAt) throw new TesseraError('token_revoked');
  if (found.session.userId !== claims.sub) throw new TesseraError('invalid_token');
  return { claims, user: found.user, session: found.session };
}

export function verifyAccessToken(ctx: AuthContext, token: string): Promise<AccessTokenClaims> {
  return verifyToken<AccessTokenClaims>(ctx.keys, token, {
    typ: ACCESS_TOKEN_TYPE,
    issuer: ctx.issuer(),
    audience: ctx.config.audience,
    now: ctx.now(),
  });
}
