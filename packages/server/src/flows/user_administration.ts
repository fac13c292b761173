import { TesseraError } from '@tessera/protocol';
import { checkPasswordPolicy, hashPassword } from '../lib/passwords.js';
import type { AuditEventName, AuditRecord, SessionRecord, UserRecord, UserSummary } from '../store/records.js';
import type { AdminGuard, UserRef } from '../store/users_store.js';
import { type Actor, actorAudit } from './actors.js';
import type { AccountsContext } from './context.js';
import { createUser } from './register_user.js';
import { normalizeUsername } from './usernames.js';

/**
 * Running users, for admins (the admin API) and operators (the CLI, directly or
 * through a running server's admin socket): one implementation for both.
 */

/** The role that opens the admin API. */
export const ADMIN_ROLE = 'admin';

/** Admins act only while they are admins, and never leave the service without one; operators are not held to it (the CLI is the way back in). */
function adminGuard(actor: Actor): AdminGuard | undefined {
  return actor.kind === 'admin' ? { actorId: actor.user.id, role: ADMIN_ROLE } : undefined;
}

const ROLE_PATTERN = /^[a-z][a-z0-9_.:-]{0,63}$/i;
const MAX_ROLES = 32;

/** A user's roles as given: each a short name, at most 32, duplicates dropped. */
export function checkRoles(roles: readonly unknown[]): string[] {
  if (roles.length > MAX_ROLES) throw new TesseraError('invalid_request', `At most ${MAX_ROLES} roles.`);
  for (const role of roles) {
    if (typeof role !== 'string' || !ROLE_PATTERN.test(role)) {
      throw new TesseraError('invalid_request', 'A role is a letter then up to 63 letters, digits or _ . : -');
    }
  }
  return [...new Set(roles as string[])];
}

export async function addUser(ctx: AccountsContext, input: { username: string; password: string; roles: readonly unknown[]; actor: Actor }): Promise<UserRecord> {
  const username = normalizeUsername(input.username);
  checkPasswordPolicy(input.password);
  const roles = checkRoles(input.roles);
  return createUser(ctx, { username, password: input.password, roles, audit: actorAudit(input.actor) });
}

/** A page of users by name, optionally those whose name or email contains `query`. */
export async function listUsers(ctx: AccountsContext, input: { query?: string; limit?: number; cursor?: string }): Promise<{ users: UserSummary[]; next: string | null }> {
  const limit = input.limit ?? 50;
  if (!Number.isInteger(limit) || limit < 1 || limit > 200) throw new TesseraError('invalid_request', 'limit must be 1..200.');
  const after = input.cursor === undefined ? undefined : decodeCursor(input.cursor);
  if (input.query?.includes('\u0000')) throw new TesseraError('invalid_request', 'query must not contain NUL.');
  const rows = await ctx.store.users.search({ now: new Date(ctx.now()), query: input.query || undefined, after, limit: limit + 1 });
  const users = rows.slice(0, limit);
  return { users, next: rows.length > limit ? encodeCursor(users.at(-1)!.username) : null };
}

/** Every user, by name (the CLI's `user list`). */
export function listAllUsers(ctx: AccountsContext): Promise<UserSummary[]> {
  return ctx.store.users.list(new Date(ctx.now()));
}

/** One user as admins see it, with its live sessions. */
export async function describeUser(ctx: AccountsContext, ref: UserRef): Promise<{ user: UserSummary; sessions: SessionRecord[] }> {
  const found = await ctx.store.users.find(ref);
  if (!found) throw notFound(ref);
  const now = new Date(ctx.now());
  const [user] = await ctx.store.users.search({ now, id: found.id, limit: 1 });
  if (!user) throw notFound();
  return { user, sessions: await ctx.store.sessions.listActive(found.id, now) };
}

/**
 * Replaces a user's roles; tokens carry them from the next refresh. An admin cannot
 * take the admin role from themselves, acts only while still an admin (checked under
 * a lock that serialises admin changes, so two admins demoting each other cannot both
 * win), and cannot leave the service without an enabled admin. Operators can (the
 * CLI is the way back in).
 */
export async function setRoles(ctx: AccountsContext, input: { user: UserRef; roles: readonly unknown[]; actor: Actor }): Promise<UserRecord> {
  const roles = checkRoles(input.roles);
  const user = await ctx.store.users.setRoles({
    user: input.user,
    roles,
    now: new Date(ctx.now()),
    audit: actorAudit(input.actor),
    admin: adminGuard(input.actor),
    guard: (target) => {
      if (input.actor.kind === 'admin' && target.id === input.actor.user.id && !roles.includes(ADMIN_ROLE)) {
        throw new TesseraError('invalid_request', 'You cannot remove your own admin role; ask another admin.');
      }
    },
  });
  if (!user) throw notFound(input.user);
  return user;
}

/** Disables (ending every session) or enables a user. An admin cannot disable themselves. */
export async function setDisabled(ctx: AccountsContext, input: { user: UserRef; disabled: boolean; actor: Actor }): Promise<{ user: UserRecord; revoked: string[] }> {
  if (input.disabled && input.actor.kind === 'admin') {
    const target = await ctx.store.users.find(input.user);
    if (target?.id === input.actor.user.id) throw new TesseraError('invalid_request', 'You cannot disable your own account.');
  }
  const result = await ctx.store.users.setDisabled({
    user: input.user,
    disabled: input.disabled,
    now: new Date(ctx.now()),
    audit: actorAudit(input.actor),
    admin: adminGuard(input.actor),
  });
  if (!result) throw notFound(input.user);
  return result;
}

/**
 * Roles and the disabled flag of one user, changed together in one transaction (the
 * admin API's PATCH): every check of `setRoles` and `setDisabled` applies, and when one
 * refuses, nothing changes.
 */
export async function updateUser(
  ctx: AccountsContext,
  input: { user: UserRef; roles?: readonly unknown[]; disabled?: boolean; actor: Actor },
): Promise<{ user: UserRecord; revoked: string[] }> {
  const roles = input.roles === undefined ? undefined : checkRoles(input.roles);
  if (input.disabled && input.actor.kind === 'admin') {
    const target = await ctx.store.users.find(input.user);
    if (target?.id === input.actor.user.id) throw new TesseraError('invalid_request', 'You cannot disable your own account.');
  }
  const result = await ctx.store.users.update({
    user: input.user,
    ...(roles === undefined ? {} : { roles }),
    ...(input.disabled === undefined ? {} : { disabled: input.disabled }),
    now: new Date(ctx.now()),
    audit: actorAudit(input.actor),
    admin: adminGuard(input.actor),
    guard: (target) => {
      if (input.actor.kind !== 'admin' || target.id !== input.actor.user.id) return;
      if (roles !== undefined && !roles.includes(ADMIN_ROLE)) throw new TesseraError('invalid_request', 'You cannot remove your own admin role; ask another admin.');
      if (input.disabled) throw new TesseraError('invalid_request', 'You cannot disable your own account.');
    },
  });
  if (!result) throw notFound(input.user);
  return result;
}

/** Ends every session of a user (`session.revoked`, reason `admin`). */
export async function endSessions(ctx: AccountsContext, input: { user: UserRef; actor: Actor }): Promise<{ user: UserRecord; revoked: string[] }> {
  const user = await ctx.store.users.find(input.user);
  if (!user) throw notFound(input.user);
  const revoked = await ctx.store.sessions.revokeAllOfUser({
    userId: user.id,
    reason: 'admin',
    now: new Date(ctx.now()),
    audit: { ...actorAudit(input.actor), userId: user.id, username: user.username },
  });
  return { user, revoked };
}

/** Sets a user's password (an operator's doing): every session ends, reset links die. */
export async function setPassword(ctx: AccountsContext, input: { user: UserRef; password: string; actor: Actor }): Promise<{ user: UserRecord; revoked: string[] }> {
  checkPasswordPolicy(input.password);
  const result = await ctx.store.users.setPassword({ user: input.user, passwordHash: await hashPassword(input.password), now: new Date(ctx.now()), audit: actorAudit(input.actor) });
  if (!result) throw notFound(input.user);
  return result;
}

export async function removeUser(ctx: AccountsContext, input: { user: UserRef; actor: Actor }): Promise<{ user: UserRecord; revoked: string[] }> {
  if (input.actor.kind === 'admin') {
    const target = await ctx.store.users.find(input.user);
    if (target?.id === input.actor.user.id) throw new TesseraError('invalid_request', 'You cannot remove your own account.');
  }
  const result = await ctx.store.users.remove({ user: input.user, now: new Date(ctx.now()), audit: actorAudit(input.actor), admin: adminGuard(input.actor) });
  if (!result) throw notFound(input.user);
  return result;
}

/** Everyone's security events, newest first, a page at a time (`before` is the last page's `next`). */
export async function listAuditEvents(
  ctx: AccountsContext,
  input: { username?: string; actor?: string; event?: string; since?: string | Date; limit?: number; before?: string },
): Promise<{ events: AuditRecord[]; next: string | null }> {
  const since = input.since === undefined ? undefined : new Date(input.since);
  // PostgreSQL and JavaScript disagree about years before 1 and after 9999: refuse them rather than fail.
  if (since && (Number.isNaN(since.getTime()) || since.getUTCFullYear() < 1970 || since.getUTCFullYear() > 9999)) {
    throw new TesseraError('invalid_request', 'since must be an ISO time like 2026-01-31T12:00:00Z, from 1970 on.');
  }
  const limit = input.limit ?? 50;
  if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new TesseraError('invalid_request', 'limit must be 1..10000.');
  if (input.before !== undefined && !/^[0-9]{1,18}$/.test(input.before)) throw new TesseraError('invalid_request', 'before must be the `next` of the previous page.');
  if (`${input.username ?? ''}${input.actor ?? ''}${input.event ?? ''}`.includes('\u0000')) throw new TesseraError('invalid_request', 'username, actor and event must not contain NUL.');
  const rows = await ctx.store.audit.list({
    username: input.username,
    actor: input.actor,
    event: input.event as AuditEventName | undefined,
    since,
    limit: limit + 1,
    before: input.before,
  });
  const events = rows.slice(0, limit);
  return { events, next: rows.length > limit ? events.at(-1)!.id : null };
}

function notFound(ref?: UserRef): TesseraError {
  return new TesseraError('not_found', ref && 'username' in ref ? `No user "${ref.username}".` : 'No such user.');
}

function encodeCursor(username: string): string {
  return Buffer.from(username, 'utf8').toString('base64url');
}

/** Any base64url text is a position in name order; PostgreSQL text cannot hold NUL. */
function decodeCursor(cursor: string): string | undefined {
  if (!/^[A-Za-z0-9_-]{1,400}$/.test(cursor)) throw new TesseraError('invalid_request', 'cursor must be the `next` of the previous page.');
  return Buffer.from(cursor, 'base64url').toString('utf8').replaceAll('\u0000', '') || undefined;
}
