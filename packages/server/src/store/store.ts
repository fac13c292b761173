import { AccountTokensStore } from './account_tokens_store.js';
import { AuditStore } from './audit_store.js';
import type { Database } from './database.js';
import { PasskeysStore } from './passkeys_store.js';
import { RevocationFeedStore } from './revocation_feed_store.js';
import { SecondFactorsStore } from './second_factors_store.js';
import { ServerSecretsStore } from './server_secrets_store.js';
import { SessionsStore } from './sessions_store.js';
import { SigningKeysStore } from './signing_keys_store.js';
import { UsersStore } from './users_store.js';
import { type AuditSink, type RevokedSink, Writer } from './writer.js';

export type { FeedPage, FeedRow } from './revocation_feed_store.js';
export type { NewRefreshToken, RotateInput, RotationOutcome } from './sessions_store.js';
export type { AuditSink, RevokedSink } from './writer.js';

/**
 * The auth server's state, as atomic operations in plain PostgreSQL, one module
 * per aggregate. Every method that changes something writes its audit rows in the
 * same transaction, through the one `Writer` they share.
 */
export class Store {
  readonly db: Database;
  readonly users: UsersStore;
  readonly sessions: SessionsStore;
  readonly feed: RevocationFeedStore;
  readonly keys: SigningKeysStore;
  readonly audit: AuditStore;
  /** Single-use password-reset and email-verification tokens. */
  readonly accountTokens: AccountTokensStore;
  /** TOTP factors, recovery codes and the login step between password and code. */
  readonly secondFactors: SecondFactorsStore;
  readonly passkeys: PasskeysStore;
  readonly secrets: ServerSecretsStore;

  constructor(db: Database, audit: AuditSink = () => {}, onSessionsRevoked: RevokedSink = () => {}) {
    this.db = db;
    const writer = new Writer(db, audit, onSessionsRevoked);
    this.users = new UsersStore(db, writer);
    this.sessions = new SessionsStore(db, writer);
    this.feed = new RevocationFeedStore(db);
    this.keys = new SigningKeysStore(db, writer);
    this.audit = new AuditStore(db, writer);
    this.accountTokens = new AccountTokensStore(db, writer);
    this.secondFactors = new SecondFactorsStore(db, writer);
    this.passkeys = new PasskeysStore(db, writer);
    this.secrets = new ServerSecretsStore(db);
  }

  async ping(): Promise<void> {
    await this.db.query('SELECT 1');
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
    await this.accountTokens.prune(before, batch);
    await this.secondFactors.prune(before);
    await drain('DELETE FROM revocation_feed WHERE position IN (SELECT position FROM revocation_feed WHERE revoked_at < $1 ORDER BY position LIMIT $2)');
    return { auditEvents, sessions };
  }
  close(): Promise<void> {
    return this.db.close();
  }
}
