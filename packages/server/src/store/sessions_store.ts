import type { RefreshChain, RotationDecision } from '../flows/refresh_rotation.js';
import type { Database } from './database.js';
import type { AuditEntry, ClientInfo, RefreshState, RevokeReason, SessionBinding, SessionRecord, TokenSubject, UserRecord } from './records.js';
import { date, dateOrNull, parseJsonUser, parseTextArray, type SessionRow, toSession, toUser, type UserRow } from './rows.js';
import { guardedByTotp } from './second_factors_store.js';
import { clientAudit, INSERT_AUDIT, type Writer } from './writer.js';

/** A refresh token to be stored: its `jti` hash and lifetime. */
export interface NewRefreshToken {
  jtiHash: string;
  issuedAt: Date;
  expiresAt: Date;
}

/** What a refresh attempt came to, decided under the session's row lock. */
export type RotationOutcome =
  | { kind: 'rotated'; user: TokenSubject; session: SessionBinding; successor: NewRefreshToken }
  /** The token was rotated moments ago: hand out the same successor again. */
  | { kind: 'replayed'; user: TokenSubject; session: SessionBinding; successor: NewRefreshToken }
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
  /** The refresh policy (`decideRotation` in flows/), run on the locked row. */
  decide: (chain: RefreshChain, presentedHash: string, now: Date, graceMs: number) => RotationDecision;
}

/** The one-statement rotation's row: the session's binding and the token subject. */
interface RotatedRow {
  id: string;
  amr: string[] | string;
  dpop_jkt: string | null;
  refresh_expires_at: Date | string;
  user_id: string;
  username: string;
  roles: string[];
  email: string | null;
  email_verified_at: Date | string | null;
}

/** Sessions and their refresh-token chains. */
export class SessionsStore {
  readonly #db: Database;
  readonly #writer: Writer;

  constructor(db: Database, writer: Writer) {
    this.#db = db;
    this.#writer = writer;
  }

  /** Live sessions across all users (the metrics gauge). */
  async countActive(now: Date): Promise<number> {
    const { rows } = await this.#db.query<{ n: string }>(
      'SELECT count(*)::text AS n FROM sessions WHERE revoked_at IS NULL AND expires_at > $1',
      [now],
    );
    return Number(rows[0]?.n ?? 0);
  }

  /**
   * Opens a session with its first refresh token, and its audit row. With
   * `policy: 'single'` the user's other sessions end in the same transaction;
   * otherwise it is one statement.
   */
  async open(input: {
    /** `amr`: how the user signed in (RFC 8176), kept for every refreshed access token. Default `['pwd']`. */
    session: { id: string; user: UserRecord; client: ClientInfo; amr?: readonly string[]; dpopJkt?: string };
    token: NewRefreshToken;
    single: boolean;
    now: Date;
  }): Promise<{ opened: true; revoked: string[] } | { opened: false }> {
    const { session, token, now } = input;
    const amr = [...(session.amr ?? ['pwd'])];
    const jkt = session.dpopJkt ?? null;
    // A session resting on the password alone is not opened for an account an
    // authenticator app guards, even one confirmed while the password was being checked.
    const passwordOnly = amr.length === 1 && amr[0] === 'pwd';
    if (!input.single) {
      // One statement: lock the user row only if it is still the one whose password
      // was verified (enabled, same hash), then insert the session and the audit row.
      // A concurrent password change or disable holds that row: this waits for it,
      // re-checks the condition against the committed row, and then inserts nothing.
      const { rows } = await this.#db.query<{ id: string }>(
        `WITH u AS (SELECT id FROM users WHERE id = $1 AND disabled_at IS NULL AND password_hash = $2
                      AND (NOT $13::boolean OR NOT ${guardedByTotp('users.id')})
                    FOR UPDATE),
              s AS (INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip, refresh_hash, refresh_issued_at, refresh_expires_at, amr, dpop_jkt)
                    SELECT $3, u.id, $4, $4, $5, $6, $7, $8, $9, $5, $11, $12 FROM u RETURNING id),
              audit AS (${INSERT_AUDIT}
                    SELECT $4, 'login.succeeded', $1, $10, s.id, $7, $6, 'success', NULL FROM s)
         SELECT id FROM s`,
        [session.user.id, session.user.passwordHash, session.id, now, token.expiresAt, session.client.userAgent, session.client.ip, token.jtiHash, token.issuedAt, session.user.username, amr, jkt, passwordOnly],
      );
      if (rows.length === 0) return { opened: false };
      this.#writer.report({ event: 'login.succeeded', outcome: 'success', userId: session.user.id, username: session.user.username, sessionId: session.id, ...clientAudit(session.client), at: now });
      return { opened: true, revoked: [] };
    }
    return this.#writer.write(now, async (tx, log, revoke) => {
      // Lock the user and check it is still the one whose password was verified: a
      // concurrent password change (or disable) wins, and logins of one user queue
      // here, so the single-session policy holds under concurrency too.
      const current = await tx.query<{ password_hash: string; disabled_at: Date | null; has_totp: boolean }>(
        `SELECT password_hash, disabled_at, ${guardedByTotp('users.id')} AS has_totp FROM users WHERE id = $1 FOR UPDATE`,
        [session.user.id],
      );
      const row = current.rows[0];
      if (!row || row.disabled_at !== null || row.password_hash !== session.user.passwordHash) return { opened: false };
      if (passwordOnly && row.has_totp) return { opened: false };
      const base = { userId: session.user.id, username: session.user.username, ...clientAudit(session.client) };
      const revoked = await revoke('user_id = $1', [session.user.id], 'policy_single');
      for (const id of revoked) await log({ ...base, event: 'session.revoked', outcome: 'success', sessionId: id, reason: 'policy_single' });
      await tx.query(
        `INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at, user_agent, ip, refresh_hash, refresh_issued_at, refresh_expires_at, amr, dpop_jkt)
         VALUES ($1, $2, $3, $3, $4, $5, $6, $7, $8, $4, $9, $10)`,
        [session.id, session.user.id, now, token.expiresAt, session.client.userAgent, session.client.ip, token.jtiHash, token.issuedAt, amr, jkt],
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
  async rotate(input: RotateInput): Promise<RotationOutcome> {
    const { now, successor, client } = input;
    // Only what the new pair needs comes back: every column returned is formatted by
    // PostgreSQL, parsed by the driver and (embedded) copied between threads, and
    // `RETURNING *` with the whole user row cost the embedded database a fifth more.
    // The user row is read, not locked: a refresh racing a disable (or any change that
    // must stop refreshes) is stopped because that change also revokes the session rows
    // in its transaction, and the UPDATE re-checks the session row it waited for. Every
    // such path (disable, password change, removal, logout, logout-all) does.
    // The user is joined once, by the UPDATE itself: a second look-up of the same row
    // for its name and roles cost PGlite's thread 7 % more per rotation.
    const { rows } = await this.#db.query<RotatedRow>(
      `WITH s AS (
         UPDATE sessions
            SET previous_hash = refresh_hash, rotated_at = $3, last_used_at = $3,
                refresh_hash = $4, refresh_issued_at = $5, refresh_expires_at = LEAST($6::timestamptz, sessions.expires_at)
           FROM users u
          WHERE sessions.id = $1 AND sessions.refresh_hash = $2 AND sessions.revoked_at IS NULL
            AND sessions.expires_at > $3 AND sessions.refresh_expires_at > $3
            AND u.id = sessions.user_id AND u.disabled_at IS NULL
         RETURNING sessions.id, sessions.amr, sessions.dpop_jkt, sessions.refresh_expires_at,
                   u.id AS user_id, u.username, u.roles, u.email, u.email_verified_at),
       audit AS (
         ${INSERT_AUDIT}
         SELECT $3, 'token.refreshed', s.user_id, s.username, s.id, $7, $8, 'success', NULL FROM s)
       SELECT * FROM s`,
      [input.sessionId, input.jtiHash, now, successor.jtiHash, successor.issuedAt, successor.expiresAt, client.ip, client.userAgent],
    );
    const row = rows[0];
    if (row) {
      const user: TokenSubject = { id: row.user_id, username: row.username, roles: row.roles, email: row.email, emailVerifiedAt: dateOrNull(row.email_verified_at) };
      this.#writer.report({ event: 'token.refreshed', outcome: 'success', userId: user.id, username: user.username, sessionId: row.id, ...clientAudit(client), at: now });
      return {
        kind: 'rotated',
        user,
        session: { id: row.id, amr: parseTextArray(row.amr), dpopJkt: row.dpop_jkt },
        successor: { ...successor, expiresAt: date(row.refresh_expires_at) },
      };
    }
    return this.#rotateCarefully(input);
  }

  async #rotateCarefully(input: RotateInput): Promise<RotationOutcome> {
    const { now } = input;
    return this.#writer.write(now, async (tx, log, revoke) => {
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
      const user = row.u ? toUser(parseJsonUser(row.u)) : null;
      const chain: RefreshChain = {
        revokedAt: session.revokedAt,
        expiresAt: session.expiresAt,
        userLive: user !== null && user.disabledAt === null,
        currentHash: row.refresh_hash,
        currentExpiresAt: row.refresh_expires_at,
        previousHash: row.previous_hash,
        rotatedAt: row.rotated_at,
      };
      const decision = input.decide(chain, input.jtiHash, now, input.graceMs);
      const base = { userId: session.userId, username: user?.username ?? null, sessionId: session.id, ...clientAudit(input.client) };
      switch (decision.kind) {
        case 'revoked':
        case 'expired':
          return { kind: decision.kind };
        case 'end':
          await revoke('id = $1', [session.id], decision.reason);
          await log({ ...base, event: 'session.revoked', outcome: 'success', reason: decision.reason });
          return { kind: 'revoked' };
        case 'rotate': {
          const successor = { ...input.successor, expiresAt: new Date(Math.min(input.successor.expiresAt.getTime(), session.expiresAt.getTime())) };
          await tx.query(
            `UPDATE sessions SET previous_hash = refresh_hash, rotated_at = $2, last_used_at = $2,
                    refresh_hash = $3, refresh_issued_at = $4, refresh_expires_at = $5
              WHERE id = $1`,
            [session.id, now, successor.jtiHash, successor.issuedAt, successor.expiresAt],
          );
          await log({ ...base, event: 'token.refreshed', outcome: 'success' });
          return { kind: 'rotated', user: user!, session: { ...session, lastUsedAt: now }, successor };
        }
        case 'replay':
          await log({ ...base, event: 'token.refreshed', outcome: 'success', reason: 'grace_replay' });
          return {
            kind: 'replayed',
            user: user!,
            session,
            successor: { jtiHash: row.refresh_hash!, issuedAt: row.refresh_issued_at!, expiresAt: row.refresh_expires_at! },
          };
        case 'reuse':
          await revoke('id = $1', [session.id], 'token_reused');
          await log({ ...base, event: 'token.reused', outcome: 'failure', reason: 'refresh token presented after rotation; session revoked' });
          await log({ ...base, event: 'session.revoked', outcome: 'success', reason: 'token_reused' });
          return { kind: 'reused' };
      }
    });
  }

  /** The session of an access token and its user, for the revocation check. */
  async findWithUser(sessionId: string): Promise<{ session: SessionRecord; user: UserRecord | null } | null> {
    const { rows } = await this.#db.query<SessionRow & { u: UserRow | null }>(
      `SELECT s.*, row_to_json(u) AS u FROM sessions s LEFT JOIN users u ON u.id = s.user_id WHERE s.id = $1`,
      [sessionId],
    );
    const row = rows[0];
    if (!row) return null;
    return { session: toSession(row), user: row.u ? toUser(parseJsonUser(row.u)) : null };
  }

  /** Sessions of a user that have not ended, newest first. */
  async listActive(userId: string, now: Date): Promise<SessionRecord[]> {
    const { rows } = await this.#db.query<SessionRow>(
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
  async revoke(input: {
    sessionId: string;
    userId?: string;
    reason: RevokeReason;
    now: Date;
    audit: Omit<AuditEntry, 'event' | 'outcome'>;
  }): Promise<boolean> {
    return this.#writer.write(input.now, async (tx, log, revoke) => {
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
  async revokeAllOfUser(input: {
    userId: string;
    reason: RevokeReason;
    now: Date;
    audit: Omit<AuditEntry, 'event' | 'outcome'>;
  }): Promise<string[]> {
    return this.#writer.write(input.now, async (_tx, log, revoke) => {
      const revoked = await revoke('user_id = $1', [input.userId], input.reason);
      for (const id of revoked) await log({ ...input.audit, event: 'session.revoked', outcome: 'success', sessionId: id, reason: input.reason });
      return revoked;
    });
  }

  /** Where a session's refresh-token chain stands (tests and operators), or null. */
  async refreshState(sessionId: string): Promise<RefreshState | null> {
    const { rows } = await this.#db.query<SessionRow>('SELECT * FROM sessions WHERE id = $1', [sessionId]);
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
}
