import type { Database, Queryable } from './database.js';
import type { ClientInfo, UserRecord } from './records.js';
import { toUser, type UserRow } from './rows.js';
import type { AuditBase } from './users_store.js';
import { clientAudit, type Writer } from './writer.js';

/**
 * SQL: whether a confirmed authenticator app guards the user whose id is `userId` (a
 * column or a parameter). One definition for every statement that asks: a login's read,
 * the session insert that refuses a password-only session, and `hasConfirmedTotp`.
 */
export function guardedByTotp(userId: string): string {
  return `EXISTS (SELECT 1 FROM totp_factors t WHERE t.user_id = ${userId} AND t.confirmed_at IS NOT NULL)`;
}

/** A user's authenticator app as stored: the secret as sealed (or not) at rest. */
export interface TotpFactor {
  userId: string;
  secret: Record<string, unknown>;
  createdAt: Date;
  confirmedAt: Date | null;
  lastStep: number | null;
  /** Wrong codes at the login step since the last right one. */
  failures: number;
}

/** The step between a right password and a second factor. */
export interface MfaChallenge {
  userId: string;
  passwordHash: string;
  expiresAt: Date;
  failures: number;
}

interface TotpRow {
  user_id: string;
  secret: Record<string, unknown>;
  created_at: Date;
  confirmed_at: Date | null;
  last_step: string | null;
  failures: number;
}

/**
 * TOTP factors, recovery codes and MFA challenges. Every code, step and challenge is
 * consumed by one conditional UPDATE: of two requests with one code, one wins.
 */
export class SecondFactorsStore {
  readonly #db: Database;
  readonly #writer: Writer;

  constructor(db: Database, writer: Writer) {
    this.#db = db;
    this.#writer = writer;
  }

  async totp(userId: string, tx: Queryable = this.#db): Promise<TotpFactor | null> {
    const { rows } = await tx.query<TotpRow>('SELECT * FROM totp_factors WHERE user_id = $1', [userId]);
    const r = rows[0];
    return r
      ? {
          userId: r.user_id,
          secret: r.secret,
          createdAt: r.created_at,
          confirmedAt: r.confirmed_at,
          lastStep: r.last_step === null ? null : Number(r.last_step),
          failures: r.failures,
        }
      : null;
  }

  /** Whether the user has a confirmed second factor (logins then need a code). */
  async hasConfirmedTotp(userId: string): Promise<boolean> {
    const { rows } = await this.#db.query<{ guarded: boolean }>(`SELECT ${guardedByTotp('$1::uuid')} AS guarded`, [userId]);
    return rows[0]?.guarded === true;
  }

  /** Starts an enrolment: replaces an unconfirmed one; false when a confirmed factor exists. */
  async startTotp(input: { userId: string; secret: Record<string, unknown>; now: Date }): Promise<boolean> {
    const { rowCount } = await this.#db.query(
      `INSERT INTO totp_factors (user_id, secret, created_at) VALUES ($1, $2, $3)
       ON CONFLICT (user_id) DO UPDATE SET secret = EXCLUDED.secret, created_at = EXCLUDED.created_at, last_step = NULL
       WHERE totp_factors.confirmed_at IS NULL`,
      [input.userId, JSON.stringify(input.secret), input.now],
    );
    return rowCount === 1;
  }

  /**
   * Accepts a TOTP code's step once: true when `step` is after the last step accepted
   * (and the factor is as expected: confirmed, or still unconfirmed for the enrolment).
   */
  async takeTotpStep(userId: string, step: number, confirmed: boolean, tx: Queryable = this.#db): Promise<boolean> {
    const { rowCount } = await tx.query(
      `UPDATE totp_factors SET last_step = $2
        WHERE user_id = $1 AND (last_step IS NULL OR last_step < $2) AND (confirmed_at IS NOT NULL) = $3`,
      [userId, step, confirmed],
    );
    return rowCount === 1;
  }

  /** Confirms an enrolment with its recovery codes (hashes); audits `mfa.enabled`. False if there was nothing to confirm. */
  async confirmTotp(input: { user: UserRecord; recoveryCodeHashes: string[]; now: Date; audit: AuditBase }): Promise<boolean> {
    return this.#writer.write(input.now, async (tx, log) => {
      const { rowCount } = await tx.query('UPDATE totp_factors SET confirmed_at = $2 WHERE user_id = $1 AND confirmed_at IS NULL', [input.user.id, input.now]);
      if (rowCount === 0) return false;
      await tx.query('DELETE FROM recovery_codes WHERE user_id = $1', [input.user.id]);
      await tx.query('INSERT INTO recovery_codes (user_id, code_hash) SELECT $1, unnest($2::text[])', [input.user.id, input.recoveryCodeHashes]);
      await log({ ...input.audit, event: 'mfa.enabled', outcome: 'success', userId: input.user.id, username: input.user.username, reason: 'totp' });
      return true;
    });
  }

  /** Removes the factor and its recovery codes; audits `mfa.disabled`. False if there was none. */
  async removeTotp(input: { user: UserRecord; now: Date; audit: AuditBase; reason: string }): Promise<boolean> {
    return this.#writer.write(input.now, async (tx, log) => {
      const { rowCount } = await tx.query('DELETE FROM totp_factors WHERE user_id = $1', [input.user.id]);
      await tx.query('DELETE FROM recovery_codes WHERE user_id = $1', [input.user.id]);
      await tx.query('UPDATE mfa_challenges SET used_at = $2 WHERE user_id = $1 AND used_at IS NULL', [input.user.id, input.now]);
      if (rowCount === 0) return false;
      await log({ ...input.audit, event: 'mfa.disabled', outcome: 'success', userId: input.user.id, username: input.user.username, reason: input.reason });
      return true;
    });
  }

  /** Uses a recovery code once; true when it was the user's and unused. */
  async useRecoveryCode(userId: string, codeHash: string, now: Date, tx: Queryable = this.#db): Promise<boolean> {
    const { rowCount } = await tx.query(
      'UPDATE recovery_codes SET used_at = $3 WHERE user_id = $1 AND code_hash = $2 AND used_at IS NULL',
      [userId, codeHash, now],
    );
    return rowCount === 1;
  }

  async unusedRecoveryCodes(userId: string): Promise<number> {
    const { rows } = await this.#db.query<{ n: string }>('SELECT count(*)::text AS n FROM recovery_codes WHERE user_id = $1 AND used_at IS NULL', [userId]);
    return Number(rows[0]?.n ?? 0);
  }

  async createChallenge(input: { tokenHash: string; user: UserRecord; now: Date; expiresAt: Date }): Promise<void> {
    await this.#db.query(
      'INSERT INTO mfa_challenges (token_hash, user_id, password_hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)',
      [input.tokenHash, input.user.id, input.user.passwordHash, input.now, input.expiresAt],
    );
  }

  /** A live challenge (not used, not expired, not worn out by failures) and its user, or null. */
  async liveChallenge(tokenHash: string, now: Date, maxFailures: number): Promise<{ challenge: MfaChallenge; user: UserRecord } | null> {
    const { rows } = await this.#db.query<UserRow & { c_password_hash: string; c_expires_at: Date; c_failures: number }>(
      `SELECT u.*, c.password_hash AS c_password_hash, c.expires_at AS c_expires_at, c.failures AS c_failures
         FROM mfa_challenges c JOIN users u ON u.id = c.user_id
        WHERE c.token_hash = $1 AND c.used_at IS NULL AND c.expires_at > $2 AND c.failures < $3`,
      [tokenHash, now, maxFailures],
    );
    const r = rows[0];
    if (!r) return null;
    return { user: toUser(r), challenge: { userId: r.id, passwordHash: r.c_password_hash, expiresAt: r.c_expires_at, failures: r.c_failures } };
  }

  /**
   * The login's second step, in one transaction on the locked challenge row: the
   * code is checked (and spent, by `check` on the same transaction) only while the
   * challenge is live, so requests racing with one `mfa_token` are served one at a
   * time: a loser finds the challenge used or worn out before it touches any code,
   * and no more than `maxFailures` wrong codes are ever checked against it. A wrong
   * code counts against the challenge and against the user's factor (consecutive
   * failures, across challenges); a right one clears the latter.
   */
  async completeChallenge(input: {
    tokenHash: string;
    now: Date;
    maxFailures: number;
    client: ClientInfo;
    check: (tx: Queryable, user: UserRecord) => Promise<boolean>;
  }): Promise<{ kind: 'dead' } | { kind: 'disabled' } | { kind: 'wrong'; user: UserRecord; factorFailures: number } | { kind: 'right'; user: UserRecord }> {
    return this.#writer.write(input.now, async (tx, log) => {
      const { rows } = await tx.query<UserRow & { c_password_hash: string }>(
        `SELECT u.*, c.password_hash AS c_password_hash
           FROM mfa_challenges c JOIN users u ON u.id = c.user_id
          WHERE c.token_hash = $1 AND c.used_at IS NULL AND c.expires_at > $2 AND c.failures < $3
          FOR UPDATE OF c`,
        [input.tokenHash, input.now, input.maxFailures],
      );
      const r = rows[0];
      // A password changed since the password step kills the step too.
      if (!r || r.password_hash !== r.c_password_hash) return { kind: 'dead' as const };
      const user = toUser(r);
      if (user.disabledAt) return { kind: 'disabled' as const };
      if (await input.check(tx, user)) {
        await tx.query('UPDATE mfa_challenges SET used_at = $2 WHERE token_hash = $1', [input.tokenHash, input.now]);
        await tx.query('UPDATE totp_factors SET failures = 0 WHERE user_id = $1 AND failures <> 0', [user.id]);
        return { kind: 'right' as const, user };
      }
      await tx.query('UPDATE mfa_challenges SET failures = failures + 1 WHERE token_hash = $1', [input.tokenHash]);
      const counted = await tx.query<{ failures: number }>('UPDATE totp_factors SET failures = failures + 1 WHERE user_id = $1 RETURNING failures', [user.id]);
      await log({ ...clientAudit(input.client), event: 'mfa.failed', outcome: 'failure', userId: user.id, username: user.username, reason: 'wrong_code' });
      return { kind: 'wrong' as const, user, factorFailures: counted.rows[0]?.failures ?? 0 };
    });
  }

  /** Deletes challenges that expired before `before`. */
  async prune(before: Date): Promise<void> {
    await this.#db.query('DELETE FROM mfa_challenges WHERE expires_at < $1', [before]);
  }
}
