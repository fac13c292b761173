import { TesseraError } from '@tessera/protocol';
import { isSealed } from '../keys/key_encryption.js';
import type { Database, Queryable } from './database.js';
import type {
  AuditEntry,
  AuditRecord,
  ClientInfo,
  RefreshState,
  RevokeReason,
  SessionRecord,
  SigningKeyRecord,
  UserRecord,
  UserSummary,
} from './records.js';

/** The audit table's columns, in the order every insert into it gives them. */
const INSERT_AUDIT = 'INSERT INTO audit_events (at, event, user_id, username, session_id, ip, user_agent, outcome, reason)';

/** Called once per audit row after its transaction committed (the JSON log line). */
export type AuditSink = (entry: AuditEntry & { at: Date }) => void;

/** Called after a transaction that revoked sessions committed (the revocation feed wakes up). */
export type RevokedSink = (sessionIds: string[]) => void;

/** Ends the sessions matching `where` (live ones only); returns the ids that ended. */
type Revoke = (where: string, params: unknown[], reason: RevokeReason) => Promise<string[]>;

/** One row of the revocation feed: a revoked session and its place in commit order. */
export interface FeedRow {
  position: number;
  sessionId: string;
  revokedAt: Date;
}

/** A page of the revocation feed read in one snapshot. */
export interface FeedPage {
  /** The feed's epoch when the page was read: a different one means the database was replaced. */
  epoch: string;
  /** The session id at the `anchor` position asked for, or null when there is no such row. */
  anchor: string | null;
  rows: FeedRow[];
  /** The highest position committed when the page was read: every row up to it is visible. */
  head: number;
  /** Whether rows past the last one returned were there. */
  more: boolean;
}

/** A refresh token to be stored: its `jti` hash and lifetime. */
export interface NewRefreshToken {
  jtiHash: string;
  issuedAt: Date;
  expiresAt: Date;
}

/** What a refresh attempt came to, decided under the session's row lock. */
export type RotationOutcome =
  | { kind: 'rotated'; user: UserRecord; session: SessionRecord; successor: NewRefreshToken }
  /** The token was rotated moments ago: hand out the same successor again. */
  | { kind: 'replayed'; user: UserRecord; session: SessionRecord; successor: NewRefreshToken }
  | { kind: 'reused' }
  | { kind: 'revoked' }
  | { kind: 'expired' }
  | { kind: 'unknown' };

export interface RotateInput {
  sessionId: string;
  jtiHash: string;
  /** The successor to store if this token is the session's current one. */
  successor: NewRefreshToken;
  now: Date;
  /** How long after its rotation a token may be presented again, in ms. */
  graceMs: number;
  client: ClientInfo;
}

/**
 * The auth server's state, as atomic operations in plain PostgreSQL. Every method
 * that changes something writes its audit rows in the same transaction.
 */
export class Store {
  readonly db: Database;
  readonly #audit: AuditSink;
  readonly #revoked: RevokedSink;

  constructor(db: Database, audit: AuditSink = () => {}, onSessionsRevoked: RevokedSink = () => {}) {
    this.db = db;
    this.#audit = audit;
    this.#revoked = onSessionsRevoked;
  }

  /**
   * Runs `fn` in a transaction and reports its audit rows and revocations once it
   * committed. Sessions end only through `revoke`, so that every revocation is
   * numbered for the feed by the transaction's last statement (see migration 5).
   */
  async #write<T>(now: Date, fn: (tx: Queryable, audit: (e: AuditEntry) => Promise<void>, revoke: Revoke) => Promise<T>): Promise<T> {
    const written: AuditEntry[] = [];
    const revoked: string[] = [];
    const result = await this.db.transaction(async (tx) => {
      const value = await fn(
        tx,
        async (entry) => {
          written.push(entry);
        },
        async (where, params, reason) => {
          const ids = await revokeWhere(tx, where, params, now, reason);
          revoked.push(...ids);
          return ids;
        },
      );
      // One statement for all of the transaction's audit rows (a logout-all of thousands
      // of sessions is two statements, not thousands), then the feed's numbering last.
      if (written.length > 0) await insertAudit(tx, now, written);
      if (revoked.length > 0) await numberRevocations(tx, revoked, now);
      return value;
    });
    for (const entry of written) this.#audit({ ...entry, at: now });
    if (revoked.length > 0) this.#revoked(revoked);
    return result;
  }

  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
  }

  // ---- users ----

  async createUser(
    input: { id: string; username: string; skeleton: string; passwordHash: string; roles: string[]; now: Date },
    audit: Omit<AuditEntry, 'event' | 'outcome'>,
  ): Promise<UserRecord> {
    try {
      return await this.#write(input.now, async (tx, log) => {
        // One sign-up at a time checks and takes a skeleton: two look-alikes registered at
        // once must not both get in (the skeleton index is not unique, for older rows).
        await tx.query('SELECT pg_advisory_xact_lock($1)', [USERNAME_LOCK]);
        const lookalike = await tx.query('SELECT 1 FROM users WHERE username_skeleton = $1 LIMIT 1', [input.skeleton]);
        if (lookalike.rows.length) throw new TesseraError('username_taken');
        const { rows } = await tx.query<UserRow>(
          `INSERT INTO users (id, username, username_skeleton, password_hash, roles, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $6) RETURNING *`,
          [input.id, input.username, input.skeleton, input.passwordHash, input.roles, input.now],
        );
        const user = toUser(rows[0]!);
        await log({ ...audit, event: 'user.registered', outcome: 'success', userId: user.id, username: user.username });
        return user;
      });
    } catch (error) {
      if (isUniqueViolation(error)) throw new TesseraError('username_taken');
      throw error;
    }
  }

  /** Gives older rows (from before migration 6) their skeleton, a batch at a time. */
  async fillUsernameSkeletons(skeleton: (username: string) => string): Promise<number> {
    let filled = 0;
    for (;;) {
      const { rows } = await this.db.query<{ id: string; username: string }>('SELECT id, username FROM users WHERE username_skeleton IS NULL LIMIT 500');
      if (rows.length === 0) return filled;
      for (const row of rows) await this.db.query('UPDATE users SET username_skeleton = $2 WHERE id = $1', [row.id, skeleton(row.username)]);
      filled += rows.length;
    }
  }

  async findUserByUsername(username: string): Promise<UserRecord | null> {
    const { rows } = await this.db.query<UserRow>('SELECT * FROM users WHERE lower(username) = lower($1)', [username]);
    return rows[0] ? toUser(rows[0]) : null;
  }

  async findUserById(id: string): Promise<UserRecord | null> {
    const { rows } = await this.db.query<UserRow>('SELECT * FROM users WHERE id = $1', [id]);
    return rows[0] ? toUser(rows[0]) : null;
  }

  /** Sets a new password hash and ends every other session of the user. */
  async changePassword(input: {
    userId: string;
    username: string;
    passwordHash: string;
    keepSessionId: string;
    now: Date;
    client: ClientInfo;
  }): Promise<{ revoked: string[] }> {
    return this.#write(input.now, async (tx, log, revoke) => {
      // The UPDATE takes the user's row lock, which logins in flight also take: a
      // session opened before this commits is seen by the revocation below.
      await tx.query('UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1', [
        input.userId,
        input.passwordHash,
        input.now,
      ]);
      const base = { userId: input.userId, username: input.username, ...clientAudit(input.client) };
      await log({ ...base, event: 'password.changed', outcome: 'success', sessionId: input.keepSessionId });
      const revoked = await revoke('user_id = $1 AND id <> $2', [input.userId, input.keepSessionId], 'password_changed');
      for (const id of revoked) await log({ ...base, event: 'session.revoked', outcome: 'success', sessionId: id, reason: 'password_changed' });
      return { revoked };
    });
  }

  /**
   * Disables or enables a user. Disabling ends every session of the user in the
   * same transaction. Returns the ended session ids, or null when there is no such user.
   */
  async setUserDisabled(input: { username: string; disabled: boolean; now: Date; audit: Omit<AuditEntry, 'event' | 'outcome'> }): Promise<{ user: UserRecord; revoked: string[] } | null> {
    return this.#write(input.now, async (tx, log, revoke) => {
      const { rows } = await tx.query<UserRow>(
        `UPDATE users SET disabled_at = ${input.disabled ? 'coalesce(disabled_at, $2)' : 'NULL'}, updated_at = $2
         WHERE lower(username) = lower($1) RETURNING *`,
        [input.username, input.now],
      );
      if (!rows[0]) return null;
      const user = toUser(rows[0]);
      const base = { ...input.audit, userId: user.id, username: user.username };
      await log({ ...base, event: input.disabled ? 'user.disabled' : 'user.enabled', outcome: 'success' });
      let revoked: string[] = [];
      if (input.disabled) {
        revoked = await revoke('user_id = $1', [user.id], 'user_disabled');
        for (const id of revoked) await log({ ...base, event: 'session.revoked', outcome: 'success', sessionId: id, reason: 'user_disabled' });
      }
      return { user, revoked };
    });
  }

  /** Removes a user; its sessions end (and stay, revoked, for the feed). Null when there is no such user. */
  async removeUser(input: { username: string; now: Date; audit: Omit<AuditEntry, 'event' | 'outcome'> }): Promise<{ user: UserRecord; revoked: string[] } | null> {
    return this.#write(input.now, async (tx, log, revoke) => {
      const found = await tx.query<UserRow>('SELECT * FROM users WHERE lower(username) = lower($1) FOR UPDATE', [input.username]);
      if (!found.rows[0]) return null;
      const user = toUser(found.rows[0]);
      const base = { ...input.audit, userId: user.id, username: user.username };
      const revoked = await revoke('user_id = $1', [user.id], 'user_removed');
      for (const id of revoked) await log({ ...base, event: 'session.revoked', outcome: 'success', sessionId: id, reason: 'user_removed' });
      await tx.query('DELETE FROM users WHERE id = $1', [user.id]);
      await log({ ...base, event: 'user.removed', outcome: 'success' });
      return { user, revoked };
    });
  }

  /** Every user with the count of its live sessions, by name. */
  async listUsers(now: Date): Promise<UserSummary[]> {
    const { rows } = await this.db.query<UserRow & { active_sessions: string }>(
      `SELECT u.*, (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.revoked_at IS NULL AND s.expires_at > $1)::text AS active_sessions
       FROM users u ORDER BY lower(u.username)`,
      [now],
    );
    return rows.map((r) => {
      const u = toUser(r);
      return { id: u.id, username: u.username, roles: u.roles, disabledAt: u.disabledAt, createdAt: u.createdAt, activeSessions: Number(r.active_sessions) };
    });
  }

  /** Live sessions across all users (the metrics gauge). */
  async countActiveSessions(now: Date): Promise<number> {
    const { rows } = await this.db.query<{ n: string }>(
      'SELECT count(*)::text AS n FROM sessions WHERE revoked_at IS NULL AND expires_at > $1',
      [now],
    );
    return Number(rows[0]?.n ?? 0);
  }

  // ---- sessions and refresh tokens ----

  /**
   * Opens a session with its first refresh token, and its audit row. With
   * `policy: 'single'` the user's other sessions end in the same transaction;
   * otherwise it is one statement.
   */
  async createSession(input: {
    session: { id: string; user: UserRecord; client: ClientInfo };
    token: NewRefreshToken;
    single: boolean;
    now: Date;
  }): Promise<{ opened: true; revoked: string[] } | { opened: false }> {
    const { session, token, now } = input;
    if (!input.single) {
      // One statement: lock the user row only if it is still the one whose password
      // was verified (enabled, same hash), then insert the session and the audit row.
      // A concurrent password change or disable holds that row: this waits for it,
      // re-checks the condition against the committed row, and then inserts nothing.
      const { rows } = await this.db.query<{ id: string }>(
        `WITH u AS (SELECT id FROM users WHERE id = $1 AND disabled_at IS NULL AND password_hash = $2 FOR UPDATE),
              s AS (INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip, refresh_hash, refresh_issued_at, refresh_expires_at)
                    SELECT $3, u.id, $4, $4, $5, $6, $7, $8, $9, $5 FROM u RETURNING id),
              audit AS (${INSERT_AUDIT}
                    SELECT $4, 'login.succeeded', $1, $10, s.id, $7, $6, 'success', NULL FROM s)
         SELECT id FROM s`,
        [session.user.id, session.user.passwordHash, session.id, now, token.expiresAt, session.client.userAgent, session.client.ip, token.jtiHash, token.issuedAt, session.user.username],
      );
      if (rows.length === 0) return { opened: false };
      this.#audit({ event: 'login.succeeded', outcome: 'success', userId: session.user.id, username: session.user.username, sessionId: session.id, ...clientAudit(session.client), at: now });
      return { opened: true, revoked: [] };
    }
    return this.#write(now, async (tx, log, revoke) => {
      // Lock the user and check it is still the one whose password was verified: a
      // concurrent password change (or disable) wins, and logins of one user queue
      // here, so the single-session policy holds under concurrency too.
      const current = await tx.query<{ password_hash: string; disabled_at: Date | null }>(
        'SELECT password_hash, disabled_at FROM users WHERE id = $1 FOR UPDATE',
        [session.user.id],
      );
      const row = current.rows[0];
      if (!row || row.disabled_at !== null || row.password_hash !== session.user.passwordHash) return { opened: false };
      const base = { userId: session.user.id, username: session.user.username, ...clientAudit(session.client) };
      let revoked: string[] = [];
      if (input.single) {
        revoked = await revoke('user_id = $1', [session.user.id], 'policy_single');
        for (const id of revoked) await log({ ...base, event: 'session.revoked', outcome: 'success', sessionId: id, reason: 'policy_single' });
      }
      await tx.query(
        `INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip, refresh_hash, refresh_issued_at, refresh_expires_at)
         VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $4)`,
        [session.id, session.user.id, now, token.expiresAt, session.client.userAgent, session.client.ip, token.jtiHash, token.issuedAt],
      );
      await log({ ...base, event: 'login.succeeded', outcome: 'success', sessionId: session.id });
      return { opened: true, revoked };
    });
  }

  /**
   * Rotates a refresh token, or recognises a replay or a theft.
   *
   * The common case is one statement: an `UPDATE` of the session row that only
   * matches while the presented token is the session's current one (and the session
   * and its user are live), with the audit row inserted by the same statement. Two
   * refreshes of one token race on that row: PostgreSQL makes the second wait for
   * the first's row lock, then re-checks the condition against the committed row, so
   * exactly one rotates.
   *
   * Everything else (the loser of such a race, a replay, a reuse, a revoked or
   * disabled session) takes the careful path: `SELECT … FOR UPDATE` on the session,
   * then a decision on the committed state. A replay of the token just replaced,
   * within the grace window, gets the same successor back (its hash is the session's
   * current one); any other token of the session with a valid signature is an old
   * link of the chain, so it is reuse and ends the session. On PGlite, statements
   * run one at a time, which gives the same order.
   */
  async rotateRefreshToken(input: RotateInput): Promise<RotationOutcome> {
    const { now, successor, client } = input;
    const { rows } = await this.db.query<SessionRow & { u: UserRow | string }>(
      `WITH s AS (
         UPDATE sessions
            SET previous_hash = refresh_hash, rotated_at = $3, last_used_at = $3,
                refresh_hash = $4, refresh_issued_at = $5, refresh_expires_at = LEAST($6::timestamptz, expires_at)
          WHERE id = $1 AND refresh_hash = $2 AND revoked_at IS NULL AND expires_at > $3 AND refresh_expires_at > $3
            AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL)
         RETURNING *),
       audit AS (
         ${INSERT_AUDIT}
         SELECT $3, 'token.refreshed', s.user_id, u.username, s.id, $7, $8, 'success', NULL FROM s JOIN users u ON u.id = s.user_id)
       SELECT s.*, row_to_json(u) AS u FROM s JOIN users u ON u.id = s.user_id`,
      [input.sessionId, input.jtiHash, now, successor.jtiHash, successor.issuedAt, successor.expiresAt, client.ip, client.userAgent],
    );
    const row = rows[0];
    if (row) {
      const user = toUser(parseJsonUser(row.u));
      this.#audit({ event: 'token.refreshed', outcome: 'success', userId: user.id, username: user.username, sessionId: row.id, ...clientAudit(client), at: now });
      return { kind: 'rotated', user, session: toSession(row), successor: { ...successor, expiresAt: row.refresh_expires_at! } };
    }
    return this.#rotateCarefully(input);
  }

  async #rotateCarefully(input: RotateInput): Promise<RotationOutcome> {
    const { now } = input;
    return this.#write(now, async (tx, log, revoke) => {
      // Lock first, then read: under READ COMMITTED the read after the lock sees what
      // the previous holder committed, the user's row included.
      const locked = await tx.query('SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE', [input.sessionId]);
      if (locked.rows.length === 0) return { kind: 'unknown' };
      const { rows } = await tx.query<SessionRow & { u: UserRow | string | null }>(
        'SELECT s.*, row_to_json(u) AS u FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = $1',
        [input.sessionId],
      );
      const row = rows[0];
      if (!row) return { kind: 'unknown' };
      const session = toSession(row);
      if (session.revokedAt) return { kind: 'revoked' };
      if (session.expiresAt <= now) return { kind: 'expired' };

      const user = row.u ? toUser(parseJsonUser(row.u)) : null;
      const base = { userId: session.userId, username: user?.username ?? null, sessionId: session.id, ...clientAudit(input.client) };
      if (!user || user.disabledAt) {
        // Refresh re-reads the user: a disabled account ends here, at the latest.
        await revoke('id = $1', [session.id], 'user_disabled');
        await log({ ...base, event: 'session.revoked', outcome: 'success', reason: 'user_disabled' });
        return { kind: 'revoked' };
      }

      if (row.refresh_hash === input.jtiHash) {
        if (row.refresh_expires_at !== null && row.refresh_expires_at <= now) return { kind: 'expired' };
        // A session has an absolute lifetime (--refresh-ttl from login): rotation
        // never extends it, so a stolen token kept alive by use still dies.
        const successor = { ...input.successor, expiresAt: new Date(Math.min(input.successor.expiresAt.getTime(), session.expiresAt.getTime())) };
        await tx.query(
          `UPDATE sessions SET previous_hash = refresh_hash, rotated_at = $2, last_used_at = $2,
                  refresh_hash = $3, refresh_issued_at = $4, refresh_expires_at = $5
            WHERE id = $1`,
          [session.id, now, successor.jtiHash, successor.issuedAt, successor.expiresAt],
        );
        await log({ ...base, event: 'token.refreshed', outcome: 'success' });
        return { kind: 'rotated', user, session: { ...session, lastUsedAt: now }, successor };
      }

      // The token just replaced, within the grace window: a second tab or a lost
      // response. Give the same successor back. Anything else is a stolen token in play.
      if (
        row.previous_hash === input.jtiHash &&
        row.rotated_at !== null &&
        row.refresh_hash !== null &&
        now.getTime() - row.rotated_at.getTime() <= input.graceMs
      ) {
        await log({ ...base, event: 'token.refreshed', outcome: 'success', reason: 'grace_replay' });
        return {
          kind: 'replayed',
          user,
          session,
          successor: { jtiHash: row.refresh_hash, issuedAt: row.refresh_issued_at!, expiresAt: row.refresh_expires_at! },
        };
      }
      await revoke('id = $1', [session.id], 'token_reused');
      await log({ ...base, event: 'token.reused', outcome: 'failure', reason: 'refresh token presented after rotation; session revoked' });
      await log({ ...base, event: 'session.revoked', outcome: 'success', reason: 'token_reused' });
      return { kind: 'reused' };
    });
  }

  /** The session of an access token and its user, for the revocation check. */
  async getSessionWithUser(sessionId: string): Promise<{ session: SessionRecord; user: UserRecord | null } | null> {
    const { rows } = await this.db.query<SessionRow & { u: UserRow | null }>(
      `SELECT s.*, row_to_json(u) AS u FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = $1`,
      [sessionId],
    );
    const row = rows[0];
    if (!row) return null;
    return { session: toSession(row), user: row.u ? toUser(parseJsonUser(row.u)) : null };
  }

  /** Sessions of a user that have not ended, newest first. */
  async listActiveSessions(userId: string, now: Date): Promise<SessionRecord[]> {
    const { rows } = await this.db.query<SessionRow>(
      `SELECT * FROM sessions WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2
       ORDER BY created_at DESC, id`,
      [userId, now],
    );
    return rows.map(toSession);
  }

  /**
   * Ends one session. With `userId`, only if the session is that user's (so a
   * caller cannot end someone else's). Returns whether a live session ended.
   */
  async revokeSession(input: {
    sessionId: string;
    userId?: string;
    reason: RevokeReason;
    now: Date;
    audit: Omit<AuditEntry, 'event' | 'outcome'>;
  }): Promise<boolean> {
    return this.#write(input.now, async (tx, log, revoke) => {
      const where = input.userId === undefined ? 'id = $1' : 'id = $1 AND user_id = $2';
      const params = input.userId === undefined ? [input.sessionId] : [input.sessionId, input.userId];
      const revoked = await revoke(where, params, input.reason);
      if (revoked.length === 0) return false;
      // A logout with a refresh token knows only the user id: name the user in the row,
      // so that `tessera audit --username` finds it.
      let username = input.audit.username;
      if (username === undefined && input.audit.userId) {
        const { rows } = await tx.query<{ username: string }>('SELECT username FROM users WHERE id = $1', [input.audit.userId]);
        username = rows[0]?.username;
      }
      await log({ ...input.audit, username, event: 'session.revoked', outcome: 'success', sessionId: input.sessionId, reason: input.reason });
      return true;
    });
  }

  /** Ends every live session of a user. Returns the ids that ended. */
  async revokeUserSessions(input: {
    userId: string;
    reason: RevokeReason;
    now: Date;
    audit: Omit<AuditEntry, 'event' | 'outcome'>;
  }): Promise<string[]> {
    return this.#write(input.now, async (_tx, log, revoke) => {
      const revoked = await revoke('user_id = $1', [input.userId], input.reason);
      for (const id of revoked) await log({ ...input.audit, event: 'session.revoked', outcome: 'success', sessionId: id, reason: input.reason });
      return revoked;
    });
  }

  /** The revocation feed's epoch (which database's numbering) and its head (the last number committed). */
  async revocationHead(): Promise<{ epoch: string; head: number }> {
    const { rows } = await this.db.query<{ epoch: string; position: string }>('SELECT epoch, position::text FROM revocation_counter');
    const row = rows[0];
    if (!row) throw new Error('revocation_counter is empty: the database was not migrated');
    return { epoch: row.epoch, head: Number(row.position) };
  }

  /**
   * Revocations numbered after `after` and made after `horizon`, in commit order, at
   * most `limit` of them, read in one snapshot together with that snapshot's head.
   * A row revoked before the horizon is skipped: its access tokens have expired.
   */
  async readFeed(after: number, horizon: Date, limit: number, anchor = 0): Promise<FeedPage> {
    const { rows } = await this.db.query<{ position: string | null; id: string | null; revoked_at: Date | null; head: string; epoch: string; anchor: string | null }>(
      `WITH head AS (SELECT position, epoch, (SELECT session_id::text FROM revocation_feed WHERE position = $4) AS anchor FROM revocation_counter),
            page AS (SELECT position, session_id AS id, revoked_at FROM revocation_feed
                      WHERE position > $1 AND revoked_at > $2 ORDER BY position LIMIT $3)
       SELECT page.position::text AS position, page.id, page.revoked_at, head.position::text AS head, head.epoch, head.anchor
         FROM head LEFT JOIN page ON true ORDER BY page.position`,
      [after, horizon, limit + 1, anchor],
    );
    const head = Number(rows[0]?.head ?? 0);
    const epoch = rows[0]?.epoch ?? '';
    const found = rows.filter((r) => r.id !== null).map((r) => ({ position: Number(r.position), sessionId: r.id!, revokedAt: r.revoked_at! }));
    return { epoch, anchor: rows[0]?.anchor ?? null, rows: found.slice(0, limit), head, more: found.length > limit };
  }

  /**
   * Gives the feed a new epoch, unless another instance already did: every cursor
   * handed out so far becomes foreign, and readers start again. For a database that
   * went back in time (a restore, a failover to a replica that was behind), whose
   * positions will be handed out a second time.
   */
  async renewFeedEpoch(old: string): Promise<void> {
    await this.db.query(`UPDATE revocation_counter SET epoch = substr(replace(gen_random_uuid()::text, '-', ''), 1, 12) WHERE epoch = $1`, [old]);
  }

  /**
   * The lowest feed position among revocations made after `horizon`, or null: a reader
   * far behind may start just before it instead of scanning the whole history.
   */
  async feedStart(horizon: Date): Promise<number | null> {
    const { rows } = await this.db.query<{ start: string | null }>(
      'SELECT min(position)::text AS start FROM revocation_feed WHERE revoked_at > $1',
      [horizon],
    );
    return rows[0]?.start == null ? null : Number(rows[0].start);
  }

  /**
   * Deletes what the retention period has passed: audit events from before `before`,
   * and sessions that ended (revoked, or expired) before it. In batches of `batch`
   * rows, each its own statement, so a large backlog never holds locks for long.
   * Idempotent: two instances pruning at once delete each row once.
   */
  async prune(before: Date, batch = 1000): Promise<{ auditEvents: number; sessions: number }> {
    const drain = async (sql: string) => {
      let total = 0;
      for (let round = 0; round < 1000; round++) {
        const { rowCount } = await this.db.query(sql, [before, batch]);
        total += rowCount;
        if (rowCount < batch) break;
      }
      return total;
    };
    const auditEvents = await drain(
      'DELETE FROM audit_events WHERE id IN (SELECT id FROM audit_events WHERE at < $1 ORDER BY at LIMIT $2)',
    );
    const sessions = await drain(
      `DELETE FROM sessions WHERE id IN (
         SELECT id FROM sessions WHERE expires_at < $1 UNION SELECT id FROM sessions WHERE revoked_at < $1 LIMIT $2)`,
    );
    // The feed's rows outlive their sessions only as long: verifiers forget them far sooner.
    await drain('DELETE FROM revocation_feed WHERE position IN (SELECT position FROM revocation_feed WHERE revoked_at < $1 ORDER BY position LIMIT $2)');
    return { auditEvents, sessions };
  }

  /** Where a session's refresh-token chain stands (tests and operators), or null. */
  async getRefreshState(sessionId: string): Promise<RefreshState | null> {
    const { rows } = await this.db.query<SessionRow>('SELECT * FROM sessions WHERE id = $1', [sessionId]);
    const r = rows[0];
    if (!r) return null;
    return {
      sessionId: r.id,
      currentHash: r.refresh_hash,
      issuedAt: r.refresh_issued_at,
      expiresAt: r.refresh_expires_at,
      previousHash: r.previous_hash,
      rotatedAt: r.rotated_at,
    };
  }

  // ---- signing keys ----

  async listSigningKeys(): Promise<SigningKeyRecord[]> {
    const { rows } = await this.db.query<KeyRow>('SELECT * FROM signing_keys ORDER BY activates_at, created_at, kid');
    return rows.map(toKey);
  }

  /** Adds a key that is published now and signs from `activatesAt`. */
  async addSigningKey(
    key: Omit<SigningKeyRecord, 'createdAt' | 'retiredAt' | 'activatesAt'>,
    input: { now: Date; activatesAt: Date; reason: string },
  ): Promise<SigningKeyRecord> {
    return this.#write(input.now, async (tx, log) => {
      const { rows } = await tx.query<KeyRow>(
        `INSERT INTO signing_keys (kid, alg, public_jwk, private_jwk, created_at, activates_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
        [key.kid, key.alg, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), input.now, input.activatesAt],
      );
      await log({ event: 'key.rotated', outcome: 'success', reason: `${input.reason}: ${key.alg} key ${key.kid}, signs from ${input.activatesAt.toISOString()}` });
      return toKey(rows[0]!);
    });
  }

  /** Takes a key out of the JWKS at once. Returns false when there is no live key `kid`. */
  async retireSigningKey(kid: string, now: Date): Promise<boolean> {
    return this.#write(now, async (tx, log) => {
      const { rowCount } = await tx.query('UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL', [kid, now]);
      if (rowCount === 0) return false;
      await log({ event: 'key.retired', outcome: 'success', reason: `key ${kid} retired` });
      return true;
    });
  }

  /**
   * Seals every private key still stored in the clear, each row only if it is
   * still the plaintext that was read (another instance may be sealing too).
   * Returns the kids it sealed, each with a `key.sealed` audit row.
   */
  async sealSigningKeys(now: Date, seal: (privateJwk: Record<string, unknown>) => Promise<Record<string, unknown>>): Promise<string[]> {
    const plain = (await this.listSigningKeys()).filter((k) => !isSealed(k.privateJwk));
    const sealed: string[] = [];
    for (const key of plain) {
      const done = await this.#write(now, async (tx, log) => {
        const { rowCount } = await tx.query(
          `UPDATE signing_keys SET private_jwk = $2 WHERE kid = $1 AND NOT (private_jwk ? 'sealed')`,
          [key.kid, JSON.stringify(await seal(key.privateJwk))],
        );
        if (rowCount === 0) return false;
        await log({ event: 'key.sealed', outcome: 'success', reason: `${key.alg} key ${key.kid} was stored in the clear; sealed with the key-encryption key` });
        return true;
      });
      if (done) sealed.push(key.kid);
    }
    return sealed;
  }

  /**
   * Rewrites the signing-key table and moves the write-ahead log on, so the old
   * row versions (which held private keys in the clear) leave the data files and
   * the WAL segments that carried them are recycled and overwritten.
   */
  async purgeOldKeyVersions(): Promise<void> {
    await this.db.exec('VACUUM FULL signing_keys');
    await this.db.exec('CHECKPOINT');
    for (let i = 0; i < 3; i++) {
      await this.db.query('SELECT pg_switch_wal()');
      await this.db.exec('CHECKPOINT');
    }
  }

  /**
   * Returns the newest live key for `alg`, creating one with `generate` if there is
   * none. An advisory lock makes instances that start together agree on one key.
   */
  async ensureSigningKey(
    alg: string,
    now: Date,
    generate: () => Promise<Omit<SigningKeyRecord, 'createdAt' | 'retiredAt' | 'activatesAt'>>,
  ): Promise<SigningKeyRecord> {
    return this.#write(now, async (tx, log) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [SIGNING_KEY_LOCK]);
      const existing = await tx.query<KeyRow>(
        'SELECT * FROM signing_keys WHERE alg = $1 AND retired_at IS NULL AND activates_at <= $2 ORDER BY activates_at DESC, kid LIMIT 1',
        [alg, now],
      );
      if (existing.rows[0]) return toKey(existing.rows[0]);
      const key = await generate();
      const { rows } = await tx.query<KeyRow>(
        'INSERT INTO signing_keys (kid, alg, public_jwk, private_jwk, created_at, activates_at) VALUES ($1, $2, $3, $4, $5, $5) RETURNING *',
        [key.kid, key.alg, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), now],
      );
      await log({ event: 'key.rotated', outcome: 'success', reason: `generated ${key.alg} key ${key.kid}` });
      return toKey(rows[0]!);
    });
  }

  // ---- audit ----

  /** Records events that change nothing else (a failed login, a rate limit). */
  async appendAudit(now: Date, entries: AuditEntry[]): Promise<void> {
    await this.#write(now, async (_tx, log) => {
      for (const entry of entries) await log(entry);
    });
  }

  /** A user's own events, newest first; `before` is the `id` cursor of the last page. */
  async listAudit(input: {
    userId?: string;
    username?: string;
    event?: string;
    since?: Date;
    limit: number;
    before?: string;
  }): Promise<AuditRecord[]> {
    const params: unknown[] = [input.limit];
    const where: string[] = [];
    const add = (sql: string, value: unknown) => {
      params.push(value);
      where.push(sql.replace('?', `$${params.length}`));
    };
    if (input.userId !== undefined) add('user_id = ?', input.userId);
    if (input.username !== undefined) add('lower(username) = lower(?)', input.username);
    if (input.event !== undefined) add('event = ?', input.event);
    if (input.since !== undefined) add('at >= ?', input.since);
    if (input.before !== undefined) {
      params.push(input.before);
      where.push(`id < $${params.length}::bigint`);
    }
    const { rows } = await this.db.query<AuditRow>(
      `SELECT id::text AS id, at, event, user_id, username, session_id, ip, user_agent, outcome, reason
       FROM audit_events ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY audit_events.id DESC LIMIT $1`,
      params,
    );
    return rows.map((r) => ({
      id: r.id,
      at: r.at,
      event: r.event as AuditRecord['event'],
      userId: r.user_id,
      username: r.username,
      sessionId: r.session_id,
      ip: r.ip,
      userAgent: r.user_agent,
      outcome: r.outcome as AuditRecord['outcome'],
      reason: r.reason,
    }));
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

const SIGNING_KEY_LOCK = 0x7e55e7b;
/** Serialises sign-ups while one checks and takes a username skeleton. */
const USERNAME_LOCK = 0x7e55e7c;

async function revokeWhere(tx: Queryable, where: string, params: unknown[], now: Date, reason: RevokeReason): Promise<string[]> {
  const n = params.length;
  const { rows } = await tx.query<{ id: string }>(
    `UPDATE sessions SET revoked_at = $${n + 1}, revoked_reason = $${n + 2}
     WHERE ${where} AND revoked_at IS NULL RETURNING id`,
    [...params, now, reason],
  );
  return rows.map((r) => r.id);
}

/**
 * Numbers a transaction's revocations for the feed: its last statement, so the
 * counter's row lock is held only until the commit, and numbers follow commit order.
 */
async function numberRevocations(tx: Queryable, sessionIds: string[], revokedAt: Date): Promise<void> {
  await tx.query(
    `WITH tick AS (UPDATE revocation_counter SET position = position + $2 RETURNING position - $2 AS base)
     INSERT INTO revocation_feed (position, session_id, revoked_at)
     SELECT tick.base + o.n, o.id, $3 FROM tick, unnest($1::uuid[]) WITH ORDINALITY AS o(id, n)`,
    [sessionIds, sessionIds.length, revokedAt],
  );
}

async function insertAudit(tx: Queryable, at: Date, entries: AuditEntry[]): Promise<void> {
  const column = <K extends keyof AuditEntry>(key: K) => entries.map((e) => e[key] ?? null);
  await tx.query(
    `${INSERT_AUDIT}
     SELECT $1::timestamptz, * FROM unnest($2::text[], $3::uuid[], $4::text[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[])`,
    [at, column('event'), column('userId'), column('username'), column('sessionId'), column('ip'), column('userAgent'), column('outcome'), column('reason')],
  );
}

function clientAudit(client: ClientInfo): { ip: string | null; userAgent: string | null } {
  return { ip: client.ip, userAgent: client.userAgent };
}

function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23505';
}

interface UserRow {
  id: string;
  username: string;
  password_hash: string;
  roles: string[];
  disabled_at: Date | string | null;
  created_at: Date | string;
}
interface SessionRow {
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
}
interface KeyRow {
  kid: string;
  alg: string;
  public_jwk: Record<string, unknown>;
  private_jwk: Record<string, unknown>;
  created_at: Date;
  activates_at: Date;
  retired_at: Date | null;
}
interface AuditRow {
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
}

const date = (v: Date | string): Date => (v instanceof Date ? v : new Date(v));
const dateOrNull = (v: Date | string | null): Date | null => (v === null ? null : date(v));

function toUser(r: UserRow): UserRecord {
  return {
    id: r.id,
    username: r.username,
    passwordHash: r.password_hash,
    roles: r.roles,
    disabledAt: dateOrNull(r.disabled_at),
    createdAt: date(r.created_at),
  };
}

// row_to_json renders a row as JSON text or an object depending on the driver.
function parseJsonUser(u: unknown): UserRow {
  // row_to_json keeps the timestamps as text: toUser turns them back into Dates.
  return (typeof u === 'string' ? JSON.parse(u) : u) as UserRow;
}

function toSession(r: SessionRow): SessionRecord {
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
  };
}

function toKey(r: KeyRow): SigningKeyRecord {
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
