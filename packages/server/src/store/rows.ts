import type { SessionRecord, SigningKeyRecord, UserRecord } from './records.js';

/** Rows as the database returns them, and their mapping to the records the flows see. */

export interface UserRow {
  id: string;
  username: string;
  password_hash: string;
  roles: string[];
  email: string | null;
  email_verified_at: Date | string | null;
  disabled_at: Date | string | null;
  created_at: Date | string;
}
export interface SessionRow {
  id: string;
  user_id: string | null;
  created_at: Date;
  last_used_at: Date;
  expires_at: Date;
  revoked_at: Date | null;
  revoked_reason: string | null;
  user_agent: string | null;
  ip: string | null;
  refresh_hash: string | null;
  refresh_issued_at: Date | null;
  refresh_expires_at: Date | null;
  previous_hash: string | null;
  rotated_at: Date | null;
  amr?: string[] | string | null;
  dpop_jkt?: string | null;
}
export interface KeyRow {
  kid: string;
  alg: string;
  public_jwk: Record<string, unknown>;
  private_jwk: Record<string, unknown>;
  created_at: Date;
  activates_at: Date;
  retired_at: Date | null;
}
export interface AuditRow {
  id: string;
  at: Date;
  event: string;
  user_id: string | null;
  username: string | null;
  session_id: string | null;
  ip: string | null;
  user_agent: string | null;
  outcome: string;
  reason: string | null;
  actor_id: string | null;
  actor_username: string | null;
}

export const date = (v: Date | string): Date => (v instanceof Date ? v : new Date(v));
export const dateOrNull = (v: Date | string | null): Date | null => (v === null ? null : date(v));

export function toUser(r: UserRow): UserRecord {
  return {
    id: r.id,
    username: r.username,
    passwordHash: r.password_hash,
    roles: r.roles,
    email: r.email ?? null,
    emailVerifiedAt: dateOrNull(r.email_verified_at ?? null),
    disabledAt: dateOrNull(r.disabled_at),
    createdAt: date(r.created_at),
  };
}

// row_to_json renders a row as JSON text or an object depending on the driver.
export function parseJsonUser(u: unknown): UserRow {
  // row_to_json keeps the timestamps as text: toUser turns them back into Dates.
  return (typeof u === 'string' ? JSON.parse(u) : u) as UserRow;
}

export function toSession(r: SessionRow): SessionRecord {
  return {
    id: r.id,
    userId: r.user_id,
    createdAt: r.created_at,
    lastUsedAt: r.last_used_at,
    expiresAt: r.expires_at,
    revokedAt: r.revoked_at,
    revokedReason: r.revoked_reason,
    userAgent: r.user_agent,
    ip: r.ip,
    amr: parseTextArray(r.amr),
    dpopJkt: r.dpop_jkt ?? null,
  };
}

export function toKey(r: KeyRow): SigningKeyRecord {
  return {
    kid: r.kid,
    alg: r.alg,
    publicJwk: r.public_jwk,
    privateJwk: r.private_jwk,
    createdAt: r.created_at,
    activatesAt: r.activates_at,
    retiredAt: r.retired_at,
  };
}

/** A text[] as either driver returns it (an array, or `{a,b}` text from row_to_json paths). */
export function parseTextArray(value: string[] | string | null | undefined): string[] {
  if (Array.isArray(value)) return value;
  if (typeof value === 'string' && value.startsWith('{') && value.endsWith('}')) return value.slice(1, -1).split(',').filter(Boolean);
  return ['pwd'];
}
