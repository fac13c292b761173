/** Rows of the store, as the flows see them. Times are `Date`s; ids are UUID strings. */

export interface UserRecord {
  id: string;
  username: string;
  passwordHash: string;
  roles: string[];
  /** Unique regardless of case; null when the user gave none. */
  email: string | null;
  /** When the current `email` was confirmed by following a link mailed to it. */
  emailVerifiedAt: Date | null;
  disabledAt: Date | null;
  createdAt: Date;
}

/** What an access token says of its user: all a refresh needs to know of the user. */
export type TokenSubject = Pick<UserRecord, 'id' | 'username' | 'roles' | 'email' | 'emailVerifiedAt'>;

export interface SessionRecord {
  id: string;
  /** `null` once the user was removed (the session stays, revoked, for the feed). */
  userId: string | null;
  createdAt: Date;
  lastUsedAt: Date;
  expiresAt: Date;
  revokedAt: Date | null;
  revokedReason: string | null;
  userAgent: string | null;
  ip: string | null;
  /** How the session signed in (RFC 8176): `['pwd']`, `['pwd', 'otp']`, `['hwk']`. */
  amr: string[];
  /** The thumbprint of the key the session is bound to (DPoP), or null for a bearer session. */
  dpopJkt: string | null;
}

/** What every token pair of a session carries from it. */
export type SessionBinding = Pick<SessionRecord, 'id' | 'amr' | 'dpopJkt'>;

/** Why a session ended; the audit log and the revocation feed carry it. */
export type RevokeReason =
  | 'logout'
  | 'logout_all'
  | 'password_changed'
  | 'policy_single'
  | 'password_reset'
  | 'admin'
  | 'user_disabled'
  | 'user_removed'
  | 'token_reused';

/**
 * Where a session's chain of refresh tokens stands: the current token and the one
 * it replaced. Tokens are never stored, only a SHA-256 of their `jti`.
 */
export interface RefreshState {
  sessionId: string;
  currentHash: string | null;
  issuedAt: Date | null;
  expiresAt: Date | null;
  previousHash: string | null;
  rotatedAt: Date | null;
}

export interface SigningKeyRecord {
  kid: string;
  alg: string;
  publicJwk: Record<string, unknown>;
  privateJwk: Record<string, unknown>;
  createdAt: Date;
  /** Signs from this moment on; published from `createdAt`. */
  activatesAt: Date;
  retiredAt: Date | null;
}

export type AuditEventName =
  | 'user.registered'
  | 'login.succeeded'
  | 'login.failed'
  | 'token.refreshed'
  | 'token.reused'
  | 'session.revoked'
  | 'password.changed'
  | 'password.change_failed'
  | 'user.disabled'
  | 'user.enabled'
  | 'user.removed'
  | 'key.rotated'
  | 'key.retired'
  | 'key.sealed'
  | 'rate_limited'
  | 'password.reset_requested'
  | 'password.reset'
  | 'email.changed'
  | 'email.verified'
  | 'user.roles_changed'
  | 'mfa.enabled'
  | 'mfa.disabled'
  | 'mfa.failed'
  | 'passkey.added'
  | 'passkey.removed'
  | 'dpop.rejected';

/** One security event. Never a token, a hash or a password. */
export interface AuditEntry {
  event: AuditEventName;
  outcome: 'success' | 'failure';
  userId?: string | null;
  username?: string | null;
  sessionId?: string | null;
  ip?: string | null;
  userAgent?: string | null;
  reason?: string | null;
  /** Who acted, when it is not the user itself: an admin (their id and name) or an operator (no id). */
  actorId?: string | null;
  actorUsername?: string | null;
}

export interface AuditRecord extends Required<AuditEntry> {
  id: string;
  at: Date;
}

/** Where a request came from, kept on sessions and audit rows. */
export interface ClientInfo {
  ip: string | null;
  userAgent: string | null;
}

/** A user as operators and admins list them. */
export interface UserSummary {
  id: string;
  username: string;
  email: string | null;
  emailVerified: boolean;
  roles: string[];
  disabledAt: Date | null;
  createdAt: Date;
  activeSessions: number;
  /** Whether a confirmed second factor (an authenticator app) protects the account. */
  mfa: boolean;
}

/** What a single-use account token is for. */
export type AccountTokenPurpose = 'password_reset' | 'email_verification';

/** An account token to store: only its hash. */
export interface NewAccountToken {
  tokenHash: string;
  purpose: AccountTokenPurpose;
  expiresAt: Date;
  /** The address a verification token confirms. */
  email?: string;
}
