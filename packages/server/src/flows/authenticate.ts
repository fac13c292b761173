import { ACCESS_TOKEN_TYPE, type AccessTokenClaims, TesseraError } from '@tessera/protocol';
import { verifyToken } from '../keys/tokens.js';
import type { ClientInfo, SessionRecord, UserRecord } from '../store/records.js';
import type { AuthContext } from './context.js';
import { type DpopRequest, requireProof } from './dpop_binding.js';

/** An access token as a request presents it: `Authorization: Bearer …` or `DPoP …` (with its proof). */
export interface AccessCredential {
  token: string;
  scheme: 'bearer' | 'dpop';
  dpop?: DpopRequest;
  client?: ClientInfo;
}

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
export async function authenticate(ctx: AuthContext, credential: string | AccessCredential): Promise<Authenticated> {
  const presented: AccessCredential = typeof credential === 'string' ? { token: credential, scheme: 'bearer' } : credential;
  const claims = await verifyAccessToken(ctx, presented.token);
  await checkBinding(ctx, claims, presented);
  const found = await ctx.store.sessions.findWithUser(claims.sid);
  if (!found) throw new TesseraError('invalid_token');
  if (found.session.revokedAt || !found.user || found.user.disabledAt) throw new TesseraError('token_revoked');
  if (found.session.userId !== claims.sub) throw new TesseraError('invalid_token');
  return { claims, user: found.user, session: found.session };
}

/**
 * RFC 9449 §7: a token bound to a key (`cnf.jkt`) counts only as `DPoP <token>` with a
 * proof by that key over this request and this token (`ath`); an unbound one only as `Bearer`.
 */
export async function checkBinding(ctx: AuthContext, claims: { sub: string; sid: string; cnf?: { jkt: string } }, presented: AccessCredential): Promise<void> {
  const jkt = claims.cnf?.jkt;
  if (jkt === undefined) {
    if (presented.scheme === 'dpop') throw new TesseraError('invalid_token', 'This token is not bound to a key: send it as Authorization: Bearer.');
    return;
  }
  if (presented.scheme !== 'dpop') throw new TesseraError('invalid_token', 'This token is bound to a key: send it as Authorization: DPoP, with a DPoP proof.');
  await requireProof(ctx, presented.dpop, {
    jkt,
    accessToken: presented.token,
    userId: claims.sub,
    sessionId: claims.sid,
    client: presented.client ?? { ip: null, userAgent: null },
  });
}

export function verifyAccessToken(ctx: AuthContext, token: string): Promise<AccessTokenClaims> {
  return verifyToken<AccessTokenClaims>(ctx.keys, token, {
    typ: ACCESS_TOKEN_TYPE,
    issuer: ctx.issuer(),
    audience: ctx.config.audience,
    now: ctx.now(),
  });
}
