import { TesseraError } from '@tessera/protocol';
import type { Database, Queryable } from './database.js';
import type { AuditEntry, ClientInfo, NewAccountToken, UserRecord, UserSummary } from './records.js';
import { toUser, type UserRow } from './rows.js';
import { guardedByTotp } from './second_factors_store.js';
import { clientAudit, isUniqueViolation, type Writer } from './writer.js';

/** Serialises sign-ups while one checks and takes a username skeleton. */
const USERNAME_LOCK = 0x7e55e7c;

/** A user named by id (the admin API) or by name (the CLI). */
export type UserRef = { id: string } | { username: string };

/** Who acts and from where, for the audit rows of a change. */
export type AuditBase = Omit<AuditEntry, 'event' | 'outcome'>;

/**
 * A change made by an admin through the API: it runs only while the admin still
 * holds `role` and is enabled (checked under a lock that serialises admin changes),
 * and never leaves the service without an enabled holder of `role`.
 */
export interface AdminGuard {
  actorId: string;
  role: string;
}

/** Users: accounts, passwords, email, roles and their state. */
export class UsersStore {
  readonly #db: Database;
  readonly #writer: Writer;

  constructor(db: Database, writer: Writer) {
    this.#db = db;
    this.#writer = writer;
  }

  /**
   * Creates a user; with an email, also its first verification token. Throws
   * `username_taken` (a name or a look-alike of one) or `email_taken`.
   */
  async create(
    input: { id: string; username: string; skeleton: string; passwordHash: string; roles: string[]; email?: string; verification?: NewAccountToken; now: Date },
    audit: AuditBase,
  ): Promise<UserRecord> {
    try {
      return await this.#writer.write(input.now, async (tx, log) => {
        // One sign-up at a time checks and takes a skeleton: two look-alikes registered at
        // once must not both get in (the skeleton index is not unique, for older rows).
        await tx.query('SELECT pg_advisory_xact_lock($1)', [USERNAME_LOCK]);
        const lookalike = await tx.query('SELECT 1 FROM users WHERE username_skeleton = $1 LIMIT 1', [input.skeleton]);
        if (lookalike.rows.length) throw new TesseraError('username_taken');
        const { rows } = await tx.query<UserRow>(
          `INSERT INTO users (id, username, username_skeleton, password_hash, roles, email, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $7) RETURNING *`,
          [input.id, input.username, input.skeleton, input.passwordHash, input.roles, input.email ?? null, input.now],
        );
        const user = toUser(rows[0]!);
        await log({ ...audit, event: 'user.registered', outcome: 'success', userId: user.id, username: user.username });
        if (input.verification) await insertAccountToken(tx, user.id, input.verification, input.now);
        return user;
      });
    } catch (error) {
      throw uniqueError(error);
    }
  }

  /** Gives older rows (from before migration 6) their skeleton, a batch at a time. */
  async fillSkeletons(skeleton: (username: string) => string): Promise<number> {
    let filled = 0;
    for (;;) {
      const { rows } = await this.#db.query<{ id: string; username: string }>('SELECT id, username FROM users WHERE username_skeleton IS NULL LIMIT 500');
      if (rows.length === 0) return filled;
      for (const row of rows) await this.#db.query('UPDATE users SET username_skeleton = $2 WHERE id = $1', [row.id, skeleton(row.username)]);
      filled += rows.length;
    }
  }

  async findByUsername(username: string): Promise<UserRecord | null> {
    const { rows } = await this.#db.query<UserRow>('SELECT * FROM users WHERE lower(username) = lower($1)', [username]);
    return rows[0] ? toUser(rows[0]) : null;
  }

  /**
   * A login's one read: the user by name and whether a confirmed authenticator app
   * guards the account (a second round trip to the database thread cost a login
   * more than the query did).
   */
  async findForLogin(username: string): Promise<{ user: UserRecord; totp: boolean } | null> {
    const { rows } = await this.#db.query<UserRow & { has_totp: boolean }>(
      `SELECT u.*, ${guardedByTotp('u.id')} AS has_totp FROM users u WHERE lower(u.username) = lower($1)`,
      [username],
    );
    const row = rows[0];
    return row ? { user: toUser(row), totp: row.has_totp === true } : null;
  }

  async findByEmail(email: string): Promise<UserRecord | null> {
    const { rows } = await this.#db.query<UserRow>('SELECT * FROM users WHERE lower(email) = lower($1)', [email]);
    return rows[0] ? toUser(rows[0]) : null;
  }

  async findById(id: string): Promise<UserRecord | null> {
    const { rows } = await this.#db.query<UserRow>('SELECT * FROM users WHERE id = $1', [id]);
    return rows[0] ? toUser(rows[0]) : null;
  }

  async find(ref: UserRef): Promise<UserRecord | null> {
    return 'id' in ref ? this.findById(ref.id) : this.findByUsername(ref.username);
  }

  /**
   * Sets a new password hash and ends every other session of the user. Refuses
   * (`invalid_credentials`, nothing changed) when the stored hash is no longer
   * `expectedHash` (a reset or an operator got there first), and `token_revoked`
   * when the caller's own session ended meanwhile (a reset ends them all).
   */
  async changePassword(input: {
    userId: string;
    username: string;
    passwordHash: string;
    expectedHash: string;
    keepSessionId: string;
    now: Date;
    client: ClientInfo;
  }): Promise<{ revoked: string[] }> {
    return this.#writer.write(input.now, async (tx, log, revoke) => {
      // The UPDATE takes the user's row lock first (as every change of a user does),
      // which logins in flight also take: a session opened before this commits is
      // seen by the revocation below.
      const changed = await tx.query('UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1 AND password_hash = $4', [
        input.userId,
        input.passwordHash,
        input.now,
        input.expectedHash,
      ]);
      if (changed.rowCount === 0) throw new TesseraError('invalid_credentials');
      const kept = await tx.query('SELECT 1 FROM sessions WHERE id = $1 AND revoked_at IS NULL', [input.keepSessionId]);
      if (kept.rowCount === 0) throw new TesseraError('token_revoked');
      await voidResetTokens(tx, input.userId, input.now);
      await unlockSecondFactor(tx, input.userId);
      const base = { userId: input.userId, username: input.username, ...clientAudit(input.client) };
      await log({ ...base, event: 'password.changed', outcome: 'success', sessionId: input.keepSessionId });
      const revoked = await revoke('user_id = $1 AND id <> $2', [input.userId, input.keepSessionId], 'password_changed');
      for (const id of revoked) await log({ ...base, event: 'session.revoked', outcome: 'success', sessionId: id, reason: 'password_changed' });
      return { revoked };
    });
  }

  /**
   * An operator sets a user's password: every session ends, and reset links
   * still out stop working. Null when there is no such user.
   */
  async setPassword(input: { user: UserRef; passwordHash: string; now: Date; audit: AuditBase }): Promise<{ user: UserRecord; revoked: string[] } | null> {
    return this.#writer.write(input.now, async (tx, log, revoke) => {
      const { rows } = await tx.query<UserRow>(`UPDATE users SET password_hash = $2, updated_at = $3 WHERE ${refWhere(input.user)} RETURNING *`, [
        refValue(input.user),
        input.passwordHash,
        input.now,
      ]);
      if (!rows[0]) return null;
      const user = toUser(rows[0]);
      await voidResetTokens(tx, user.id, input.now);
      await unlockSecondFactor(tx, user.id);
      const base = { ...input.audit, userId: user.id, username: user.username };
      await log({ ...base, event: 'password.changed', outcome: 'success', reason: 'set by an operator' });
      const revoked = await revoke('user_id = $1', [user.id], 'password_changed');
      for (const id of revoked) await log({ ...base, event: 'session.revoked', outcome: 'success', sessionId: id, reason: 'password_changed' });
      return { user, revoked };
    });
  }

  /**
   * Disables or enables a user. Disabling ends every session of the user in the
   * same transaction. Returns the ended session ids, or null when there is no such user.
   */
  async setDisabled(input: {
    user: UserRef;
    disabled: boolean;
    now: Date;
    audit: AuditBase;
    admin?: AdminGuard;
  }): Promise<{ user: UserRecord; revoked: string[]; changed: boolean } | null> {
    return this.update(input);
  }

  /**
   * Replaces a user's roles (tokens carry them from the next refresh). `guard` runs
   * on the locked row before the change and may refuse it by throwing. Null when
   * there is no such user.
   */
  async setRoles(input: {
    user: UserRef;
    roles: string[];
    now: Date;
    audit: AuditBase;
    guard?: (user: UserRecord) => void;
    admin?: AdminGuard;
  }): Promise<UserRecord | null> {
    return (await this.update(input))?.user ?? null;
  }

  /**
   * Roles and the disabled flag in one transaction: both change or, when a check
   * refuses either (`guard` on the locked row, the admin guard), neither does.
   * Disabling ends every session of the user with it. Null when there is no such user.
   */
  async update(input: {
    user: UserRef;
    roles?: string[];
    disabled?: boolean;
    now: Date;
    audit: AuditBase;
    guard?: (user: UserRecord) => void;
    admin?: AdminGuard;
  }): Promise<{ user: UserRecord; revoked: string[]; changed: boolean } | null> {
    return this.#writer.write(input.now, async (tx, log, revoke) => {
      if (input.admin) await lockAdminChange(tx, input.admin);
      const found = await tx.query<UserRow>(`SELECT * FROM users WHERE ${refWhere(input.user)} FOR UPDATE`, [refValue(input.user)]);
      if (!found.rows[0]) return null;
      let user = toUser(found.rows[0]);
      input.guard?.(user);
      let changed = false;
      let revoked: string[] = [];
      if (input.roles !== undefined) {
        const { rows } = await tx.query<UserRow>('UPDATE users SET roles = $2, updated_at = $3 WHERE id = $1 RETURNING *', [user.id, input.roles, input.now]);
        user = toUser(rows[0]!);
        changed = true;
        await log({ ...input.audit, event: 'user.roles_changed', outcome: 'success', userId: user.id, username: user.username, reason: `roles: ${user.roles.join(', ') || '(none)'}` });
      }
      if (input.disabled !== undefined && (user.disabledAt !== null) !== input.disabled) {
        const { rows } = await tx.query<UserRow>(`UPDATE users SET disabled_at = ${input.disabled ? '$2' : 'NULL'}, updated_at = $2 WHERE id = $1 RETURNING *`, [
          user.id,
          input.now,
        ]);
        user = toUser(rows[0]!);
        changed = true;
        const base = { ...input.audit, userId: user.id, username: user.username };
        await log({ ...base, event: input.disabled ? 'user.disabled' : 'user.enabled', outcome: 'success' });
        if (input.disabled) {
          // A disabled account cannot be taken back through a link mailed before.
          await voidResetTokens(tx, user.id, input.now);
          revoked = await revoke('user_id = $1', [user.id], 'user_disabled');
          for (const id of revoked) await log({ ...base, event: 'session.revoked', outcome: 'success', sessionId: id, reason: 'user_disabled' });
        }
      }
      if (changed && input.admin) await ensureAdminLeft(tx, input.admin);
      return { user, revoked, changed };
    });
  }

  /**
   * Sets the user's email, unverified, with a verification token for it; tokens
   * mailed to an earlier address stop working. Throws `email_taken`.
   */
  async setEmail(input: { userId: string; email: string; verification: NewAccountToken; now: Date; audit: AuditBase }): Promise<UserRecord | null> {
    try {
      return await this.#writer.write(input.now, async (tx, log) => {
        const { rows } = await tx.query<UserRow>(
          `UPDATE users SET email = $2, updated_at = $3,
                  email_verified_at = CASE WHEN lower(email) = lower($2) THEN email_verified_at END
            WHERE id = $1 RETURNING *`,
          [input.userId, input.email, input.now],
        );
        if (!rows[0]) return null;
        const user = toUser(rows[0]);
        // Links mailed to an earlier address, verification and reset alike, stop working.
        await tx.query(`UPDATE account_tokens SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL`, [user.id, input.now]);
        await insertAccountToken(tx, user.id, input.verification, input.now);
        await log({ ...input.audit, event: 'email.changed', outcome: 'success', userId: user.id, username: user.username });
        return user;
      });
    } catch (error) {
      throw uniqueError(error);
    }
  }

  /** Removes a user; its sessions end (and stay, revoked, for the feed). Null when there is no such user. */
  async remove(input: { user: UserRef; now: Date; audit: AuditBase; admin?: AdminGuard }): Promise<{ user: UserRecord; revoked: string[] } | null> {
    return this.#writer.write(input.now, async (tx, log, revoke) => {
      if (input.admin) await lockAdminChange(tx, input.admin);
      const found = await tx.query<UserRow>(`SELECT * FROM users WHERE ${refWhere(input.user)} FOR UPDATE`, [refValue(input.user)]);
      if (!found.rows[0]) return null;
      const user = toUser(found.rows[0]);
      const base = { ...input.audit, userId: user.id, username: user.username };
      const revoked = await revoke('user_id = $1', [user.id], 'user_removed');
      for (const id of revoked) await log({ ...base, event: 'session.revoked', outcome: 'success', sessionId: id, reason: 'user_removed' });
      await tx.query('DELETE FROM users WHERE id = $1', [user.id]);
      if (input.admin) await ensureAdminLeft(tx, input.admin);
      await log({ ...base, event: 'user.removed', outcome: 'success' });
      return { user, revoked };
    });
  }

  /** Every user with the count of its live sessions, by name (the CLI's list). */
  async list(now: Date): Promise<UserSummary[]> {
    return this.search({ now, limit: null });
  }

  /**
   * Users by name, each with the count of its live sessions: those whose name or email
   * contains `query` (any case), after the name `after` (the cursor), at most `limit`.
   */
  async search(input: { now: Date; id?: string; query?: string; after?: string; limit: number | null }): Promise<UserSummary[]> {
    const params: unknown[] = [input.now];
    const where: string[] = [];
    if (input.id !== undefined) {
      params.push(input.id);
      where.push(`u.id = $${params.length}`);
    }
    if (input.query) {
      params.push(`%${input.query.toLowerCase().replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
      where.push(`(lower(u.username) LIKE $${params.length} OR lower(u.email) LIKE $${params.length})`);
    }
    if (input.after !== undefined) {
      params.push(input.after);
      where.push(`lower(u.username) > lower($${params.length})`);
    }
    if (input.limit !== null) params.push(input.limit);
    const { rows } = await this.#db.query<UserRow & { active_sessions: string; mfa: boolean }>(
      `SELECT u.*, (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > $1)::text AS active_sessions,
              EXISTS (SELECT 1 FROM totp_factors t WHERE t.user_id = u.id AND t.confirmed_at IS NOT NULL) AS mfa
       FROM users u ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY lower(u.username) ${input.limit === null ? '' : `LIMIT $${params.length}`}`,
      params,
    );
    return rows.map((r) => {
      const u = toUser(r);
      return {
        id: u.id,
        username: u.username,
        email: u.email,
        emailVerified: u.emailVerifiedAt !== null,
        roles: u.roles,
        disabledAt: u.disabledAt,
        createdAt: u.createdAt,
        activeSessions: Number(r.active_sessions),
        mfa: r.mfa === true,
      };
    });
  }
}

function refWhere(ref: UserRef): string {
  return 'id' in ref ? 'id = $1' : 'lower(username) = lower($1)';
}
function refValue(ref: UserRef): string {
  return 'id' in ref ? ref.id : ref.username;
}

export async function insertAccountToken(tx: Queryable, userId: string, token: NewAccountToken, now: Date): Promise<void> {
  await tx.query(
    'INSERT INTO account_tokens (token_hash, user_id, purpose, email, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)',
    [token.tokenHash, userId, token.purpose, token.email ?? null, now, token.expiresAt],
  );
}

/** See `AdminGuard`. Admin changes take one transaction-scoped advisory lock, so two admins demoting each other cannot both win. */
async function lockAdminChange(tx: Queryable, guard: AdminGuard): Promise<void> {
  await tx.query(`SELECT pg_advisory_xact_lock(hashtext('tessera.admin_changes'))`);
  const { rows } = await tx.query<{ allowed: boolean }>('SELECT $2 = ANY(roles) AND disabled_at IS NULL AS allowed FROM users WHERE id = $1', [
    guard.actorId,
    guard.role,
  ]);
  if (!rows[0]?.allowed) throw new TesseraError('forbidden');
}

async function ensureAdminLeft(tx: Queryable, guard: AdminGuard): Promise<void> {
  const { rows } = await tx.query<{ left: boolean }>('SELECT EXISTS (SELECT 1 FROM users WHERE $1 = ANY(roles) AND disabled_at IS NULL) AS left', [guard.role]);
  if (!rows[0]?.left) throw new TesseraError('invalid_request', `That would leave no enabled user with the role "${guard.role}".`);
}

/** A new password makes every reset link still out worthless. */
export async function voidResetTokens(tx: Queryable, userId: string, now: Date): Promise<void> {
  await tx.query(`UPDATE account_tokens SET used_at = $2 WHERE user_id = $1 AND purpose = 'password_reset' AND used_at IS NULL`, [userId, now]);
}

/** A new password unlocks an authenticator app locked by wrong codes: whoever guessed them knew the old password. */
export async function unlockSecondFactor(tx: Queryable, userId: string): Promise<void> {
  await tx.query('UPDATE totp_factors SET failures = 0 WHERE user_id = $1 AND failures <> 0', [userId]);
}

function uniqueError(error: unknown): unknown {
  if (!isUniqueViolation(error)) return error;
  const { constraint, detail } = error as { constraint?: string; detail?: string };
  return new TesseraError(constraint === 'users_email_key' || /\(lower\(email\)\)/.test(detail ?? '') ? 'email_taken' : 'username_taken');
}
