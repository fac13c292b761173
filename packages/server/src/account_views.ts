import type { AuditRecord, SessionRecord, UserSummary } from './store/records.js';

/** A user as the admin API and the CLI show it (JSON, snake_case). */
export interface UserView {
  id: string;
  username: string;
  email: string | null;
  email_verified: boolean;
  roles: string[];
  disabled: boolean;
  /** Whether a second factor (an authenticator app) is set up. */
  mfa: boolean;
  created_at: string;
  active_sessions: number;
}

export interface SessionView {
  id: string;
  created_at: string;
  last_used_at: string;
  expires_at: string;
  user_agent: string | null;
  ip: string | null;
}

export interface AuditEventView {
  id: string;
  at: string;
  event: string;
  user_id: string | null;
  username: string | null;
  session_id: string | null;
  ip: string | null;
  user_agent: string | null;
  outcome: 'success' | 'failure';
  reason: string | null;
  /** The admin who acted on someone else's account, when one did. */
  actor_id: string | null;
  actor_username: string | null;
}

export function userView(u: UserSummary): UserView {
  return {
    id: u.id,
    username: u.username,
    email: u.email,
    email_verified: u.emailVerified,
    roles: u.roles,
    disabled: u.disabledAt !== null,
    mfa: u.mfa,
    created_at: u.createdAt.toISOString(),
    active_sessions: u.activeSessions,
  };
}

export function sessionView(s: SessionRecord): SessionView {
  return {
    id: s.id,
    created_at: s.createdAt.toISOString(),
    last_used_at: s.lastUsedAt.toISOString(),
    expires_at: s.expiresAt.toISOString(),
    user_agent: s.userAgent,
    ip: s.ip,
  };
}

export function auditEventView(e: AuditRecord): AuditEventView {
  return {
    id: e.id,
    at: e.at.toISOString(),
    event: e.event,
    user_id: e.userId,
    username: e.username,
    session_id: e.sessionId,
    ip: e.ip,
    user_agent: e.userAgent,
    outcome: e.outcome,
    reason: e.reason,
    actor_id: e.actorId,
    actor_username: e.actorUsername,
  };
}
