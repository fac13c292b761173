import type { TokenPair } from '@tessera/protocol';
import { signAccessToken, signRefreshToken } from '../keys/tokens.js';
import type { TokenSubject } from '../store/records.js';
import type { AuthContext } from './context.js';

/** A pair as returned by login and refresh: the body, plus the refresh token for a cookie. */
export interface IssuedPair {
  body: TokenPair & { refresh_token: string };
  refreshExpiresAt: Date;
}

/**
 * Signs an access token (fresh `jti`, the user's current name and roles) and the
 * refresh token `refreshJti`, whose `iat`/`exp` the store already recorded.
 */
export async function issueTokenPair(
  ctx: AuthContext,
  input: { user: TokenSubject; sessionId: string; amr: readonly string[]; jkt?: string | null; refreshJti: string; issuedAt: Date; expiresAt: Date },
): Promise<IssuedPair> {
  const now = ctx.now();
  const issuer = ctx.issuer();
  const [access, refresh] = await Promise.all([
    signAccessToken(ctx.keys, {
      issuer,
      audience: ctx.config.audience,
      clientId: ctx.config.clientId,
      userId: input.user.id,
      username: input.user.username,
      roles: input.user.roles,
      ...(input.user.email ? { emailVerified: input.user.emailVerifiedAt !== null } : {}),
      sessionId: input.sessionId,
      amr: input.amr,
      ...(input.jkt ? { jkt: input.jkt } : {}),
      now,
      ttl: ctx.config.accessTtl,
    }),
    signRefreshToken(ctx.keys, {
      issuer,
      userId: input.user.id,
      sessionId: input.sessionId,
      jti: input.refreshJti,
      issuedAt: input.issuedAt,
      expiresAt: input.expiresAt,
      ...(input.jkt ? { jkt: input.jkt } : {}),
    }),
  ]);
  return {
    body: {
      access_token: access.token,
      refresh_token: refresh,
      token_type: input.jkt ? 'DPoP' : 'Bearer',
      expires_in: ctx.config.accessTtl,
      refresh_expires_in: Math.max(0, Math.floor((input.expiresAt.getTime() - now) / 1000)),
      session_id: input.sessionId,
    },
    refreshExpiresAt: input.expiresAt,
  };
}
