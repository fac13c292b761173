import type { Database, Queryable } from './database.js';
import type { ClientInfo, NewAccountToken, UserRecord } from './records.js';
import { toUser, type UserRow } from './rows.js';
import { type AuditBase, insertAccountToken, unlockSecondFactor, voidResetTokens } from './users_store.js';
import { clientAudit, type Writer } from './writer.js';

/**
 * Single-use tokens behind mailed links: password resets and email verification.
 * Only hashes are stored; each is consumed by one conditional UPDATE, so two
 * requests with one token cannot both succeed.
 */
export class AccountTokensStore {
  readonly #db: Database;
  readonly #writer: Writer;

  constructor(db: Database, writer: Writer) {
    this.#db = db;
    this.#writer = writer;
  }

  /** Stores a password-reset token for `userId`, with its `password.reset_requested` row. */
  async issueReset(input: { userId: string; username: string; token: NewAccountToken; now: Date; audit: AuditBase }): Promise<void> {
    await this.#writer.write(input.now, async (tx, log) => {
      await insertAccountToken(tx, input.userId, input.token, input.now);
      await log({ ...input.audit, event: 'password.reset_requested', outcome: 'success', userId: input.userId, username: input.username });
    });
  }

  /**
   * Consumes a live password-reset token and sets the new password; every session of
   * the user ends, and every other reset token of theirs dies. Null when the token is
   * unknown, used or expired (and nothing changed).
   */
  async redeemReset(input: { tokenHash: string; passwordHash: string; now: Date; client: ClientInfo }): Promise<{ user: UserRecord; revoked: string[] } | null> {
    return this.#writer.write(input.now, async (tx, log, revoke) => {
      // The user's row first, as every change of a user takes it: the token row second
      // (a password change voids tokens in that order too), so the two never deadlock.
      const owner = await lockTokenOwner(tx, input.tokenHash);
      if (!owner || owner.disabled_at !== null) return null;
      const used = await tx.query<{ user_id: string }>(
        `UPDATE account_tokens SET used_at = $2
          WHERE token_hash = $1 AND purpose = 'password_reset' AND used_at IS NULL AND expires_at > $2 AND user_id = $3
          RETURNING user_id`,
        [input.tokenHash, input.now, owner.id],
      );
      const userId = used.rows[0]?.user_id;
      if (!userId) return null;
      const { rows } = await tx.query<UserRow>('UPDATE users SET password_hash = $2, updated_at = $3 WHERE id = $1 RETURNING *', [userId, input.passwordHash, input.now]);
      const user = toUser(rows[0]!);
      await voidResetTokens(tx, user.id, input.now);
      await unlockSecondFactor(tx, user.id);
      const base = { userId: user.id, username: user.username, ...clientAudit(input.client) };
      await log({ ...base, event: 'password.reset', outcome: 'success' });
      const revoked = await revoke('user_id = $1', [user.id], 'password_reset');
      for (const id of revoked) await log({ ...base, event: 'session.revoked', outcome: 'success', sessionId: id, reason: 'password_reset' });
      return { user, revoked };
    });
  }

  /**
   * Consumes a live verification token whose address is still the user's, and marks
   * that address verified. Null when the token is unknown, used, expired, or for an
   * address the user no longer has (and nothing changed).
   */
  async redeemVerification(input: { tokenHash: string; now: Date; client: ClientInfo }): Promise<UserRecord | null> {
    return this.#writer.write(input.now, async (tx, log) => {
      const owner = await lockTokenOwner(tx, input.tokenHash);
      if (!owner) return null;
      const used = await tx.query<{ user_id: string }>(
        `UPDATE account_tokens t SET used_at = $2
           FROM users u
          WHERE t.token_hash = $1 AND t.purpose = 'email_verification' AND t.used_at IS NULL AND t.expires_at > $2
            AND u.id = t.user_id AND u.id = $3 AND lower(u.email) = lower(t.email)
          RETURNING t.user_id`,
        [input.tokenHash, input.now, owner.id],
      );
      const userId = used.rows[0]?.user_id;
      if (!userId) return null;
      const { rows } = await tx.query<UserRow>(
        'UPDATE users SET email_verified_at = coalesce(email_verified_at, $2), updated_at = $2 WHERE id = $1 RETURNING *',
        [userId, input.now],
      );
      const user = toUser(rows[0]!);
      await log({ userId: user.id, username: user.username, ...clientAudit(input.client), event: 'email.verified', outcome: 'success' });
      return user;
    });
  }

  /** Deletes tokens that expired before `before`, a batch at a time; returns how many. */
  async prune(before: Date, batch = 1000): Promise<number> {
    let total = 0;
    for (let round = 0; round < 1000; round++) {
      const { rowCount } = await this.#db.query(
        'DELETE FROM account_tokens WHERE token_hash IN (SELECT token_hash FROM account_tokens WHERE expires_at < $1 LIMIT $2)',
        [before, batch],
      );
      total += rowCount;
      if (rowCount < batch) break;
    }
    return total;
  }
}

/** Locks (and returns) the user a token belongs to, before the token itself is touched. */
async function lockTokenOwner(tx: Queryable, tokenHash: string): Promise<{ id: string; disabled_at: Date | null } | null> {
  const { rows } = await tx.query<{ id: string; disabled_at: Date | null }>(
    'SELECT u.id, u.disabled_at FROM users u JOIN account_tokens t ON t.user_id = u.id WHERE t.token_hash = $1 FOR UPDATE OF u',
    [tokenHash],
  );
  return rows[0] ?? null;
}
