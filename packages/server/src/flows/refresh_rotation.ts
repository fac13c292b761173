/**
 * The refresh policy: what presenting a refresh token does to its session. A pure
 * function of the session as committed (read under its row lock), the token
 * presented, the time and the grace window, so that it can be read top to bottom
 * and tested exhaustively; the store applies the decision in the same transaction.
 * (The store's one-statement fast path is this function's `rotate` case, taken when
 * the UPDATE's condition proves it without reading the row first.)
 */

/** A session's refresh state, as its locked row says. */
export interface RefreshChain {
  revokedAt: Date | null;
  /** The session's absolute end (`--refresh-ttl` from login): rotation never extends it. */
  expiresAt: Date;
  /** The user exists and is enabled. */
  userLive: boolean;
  /** Hash of the current refresh token's `jti`, and when that token expires. */
  currentHash: string | null;
  currentExpiresAt: Date | null;
  /** Hash of the token the current one replaced, and when that happened. */
  previousHash: string | null;
  rotatedAt: Date | null;
}

export type RotationDecision =
  /** The session already ended: nothing changes. */
  | { kind: 'revoked' }
  /** The session or the presented token has expired: nothing changes. */
  | { kind: 'expired' }
  /** The user was removed or disabled: the session ends here, at the latest. */
  | { kind: 'end'; reason: 'user_disabled' }
  /** The presented token is the current one: replace it with a successor. */
  | { kind: 'rotate' }
  /** The token just replaced, within the grace window (a second tab, a lost response): the same successor again. */
  | { kind: 'replay' }
  /** Any other token of the chain: stolen and in play. The session ends. */
  | { kind: 'reuse' };

/**
 * Decides a refresh. `presentedHash` is the hash of a `jti` whose signature and
 * session id were already verified, so a token that is neither the current nor the
 * just-replaced one is an older link of this very chain.
 */
export function decideRotation(chain: RefreshChain, presentedHash: string, now: Date, graceMs: number): RotationDecision {
  if (chain.revokedAt !== null) return { kind: 'revoked' };
  if (chain.expiresAt <= now) return { kind: 'expired' };
  if (!chain.userLive) return { kind: 'end', reason: 'user_disabled' };
  if (chain.currentHash === presentedHash) {
    return chain.currentExpiresAt !== null && chain.currentExpiresAt <= now ? { kind: 'expired' } : { kind: 'rotate' };
  }
  const justReplaced =
    chain.previousHash === presentedHash &&
    chain.rotatedAt !== null &&
    chain.currentHash !== null &&
    now.getTime() - chain.rotatedAt.getTime() <= graceMs;
  return justReplaced ? { kind: 'replay' } : { kind: 'reuse' };
}
