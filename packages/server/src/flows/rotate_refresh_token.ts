import { REFRESH_TOKEN_TYPE, type RefreshTokenClaims, TesseraError } from '@tessera/protocol';
import { refreshJtiHash, successorJti, verifyToken } from '../keys/tokens.js';
import type { ClientInfo } from '../store/records.js';
import type { AuthContext } from './context.js';
import { type DpopRequest, requireProof } from './dpop_binding.js';
import { type IssuedPair, issueTokenPair } from './issue_token_pair.js';
import { decideRotation } from './refresh_rotation.js';

/**
 * Exchanges a refresh token for a new pair. Every refresh rotates; a replay of
 * the token just rotated, within the grace window, gets the same successor
 * (same `jti`); any other reuse ends the session (`token_reused`).
 */
export async function rotateRefreshToken(
  ctx: AuthContext,
  input: { refreshToken: string; client: ClientInfo; dpop?: DpopRequest },
): Promise<IssuedPair> {
  const now = ctx.now();
  let claims: RefreshTokenClaims;
  try {
    claims = await verifyRefreshToken(ctx, input.refreshToken);
  } catch (error) {
    ctx.metrics.refreshes.inc({ outcome: error instanceof TesseraError && error.code === 'token_expired' ? 'expired' : 'invalid' });
    throw error;
  }
  // A bound session's refresh token is worthless without a proof by its key: checked
  // before anything changes, so a thief can neither rotate nor revoke the session.
  const jkt = claims.cnf?.jkt;
  if (jkt !== undefined) {
    try {
      await requireProof(ctx, input.dpop, { jkt, userId: claims.sub, sessionId: claims.sid, client: input.client });
    } catch (error) {
      ctx.metrics.refreshes.inc({ outcome: 'invalid_dpop_proof' });
      throw error;
    }
  }
  const nextJti = successorJti(claims.jti);
  const issuedAt = new Date(now);
  const outcome = await ctx.store.sessions.rotate({
    sessionId: claims.sid,
    jtiHash: refreshJtiHash(claims.jti),
    successor: {
      jtiHash: refreshJtiHash(nextJti),
      issuedAt,
      expiresAt: new Date(now + ctx.config.refreshTtl * 1000),
    },
    now: issuedAt,
    graceMs: ctx.config.reuseGrace * 1000,
    client: input.client,
    decide: decideRotation,
  });
  ctx.metrics.refreshes.inc({ outcome: OUTCOME_LABEL[outcome.kind] });
  switch (outcome.kind) {
    case 'rotated':
    case 'replayed':
      return issueTokenPair(ctx, {
        user: outcome.user,
        sessionId: outcome.session.id,
        amr: outcome.session.amr,
        jkt: outcome.session.dpopJkt,
        refreshJti: nextJti,
        issuedAt: outcome.successor.issuedAt,
        expiresAt: outcome.successor.expiresAt,
      });
    case 'reused':
      ctx.log.warn({ sessionId: claims.sid, userId: claims.sub }, 'refresh token reused after rotation: session revoked (theft suspected)');
      throw new TesseraError('token_reused');
    case 'revoked':
      throw new TesseraError('token_revoked');
    case 'expired':
      throw new TesseraError('token_expired');
    case 'unknown':
      throw new TesseraError('invalid_token');
  }
}

const OUTCOME_LABEL = {
  rotated: 'rotated',
  replayed: 'grace_replay',
  reused: 'reused',
  revoked: 'revoked',
  expired: 'expired',
  unknown: 'invalid',
} as const;

/** A refresh token's signature and claims: `typ: refresh+jwt`, audience = issuer. */
export function verifyRefreshToken(ctx: AuthContext, token: string): Promise<RefreshTokenClaims> {
  const issuer = ctx.issuer();
  return verifyToken<RefreshTokenClaims>(ctx.keys, token, {
    typ: REFRESH_TOKEN_TYPE,
    issuer,
    audience: issuer,
    now: ctx.now(),
  });
}
