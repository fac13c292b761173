import type { Database, Queryable } from './database.js';
import type { AuditEntry, ClientInfo, RevokeReason } from './records.js';

/** The audit table's columns that the one-statement fast paths give (no actor: the user acts). */
export const INSERT_AUDIT = 'INSERT INTO audit_events (at, event, user_id, username, session_id, ip, user_agent, outcome, reason)';

/** Called once per audit row after its transaction committed (the JSON log line). */
export type AuditSink = (entry: AuditEntry & { at: Date }) => void;

/** Called after a transaction that revoked sessions committed (the revocation feed wakes up). */
export type RevokedSink = (sessionIds: string[]) => void;

/** Ends the sessions matching `where` (live ones only); returns the ids that ended. */
export type Revoke = (where: string, params: unknown[], reason: RevokeReason) => Promise<string[]>;

/** Adds an audit row to the transaction: inserted before it commits, reported after. */
export type AuditWrite = (entry: AuditEntry) => Promise<void>;

/**
 * The one transaction helper of every store module: a change, its audit rows and
 * its revocations commit together, and are reported (log line, feed wake-up) only
 * once they did.
 */
export class Writer {
  readonly #db: Database;
  readonly #audit: AuditSink;
  readonly #revoked: RevokedSink;

  constructor(db: Database, audit: AuditSink, revoked: RevokedSink) {
    this.#db = db;
    this.#audit = audit;
    this.#revoked = revoked;
  }

  /**
   * Runs `fn` in a transaction and reports its audit rows and revocations once it
   * committed. Sessions end only through `revoke`, so that every revocation is
   * numbered for the feed by the transaction's last statement (see migration 5).
   */
  async write<T>(now: Date, fn: (tx: Queryable, audit: AuditWrite, revoke: Revoke) => Promise<T>): Promise<T> {
    const written: AuditEntry[] = [];
    const revoked: string[] = [];
    const result = await this.#db.transaction(async (tx) => {
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

  /** Reports an audit row that a single statement already inserted (the fast paths). */
  report(entry: AuditEntry & { at: Date }): void {
    this.#audit(entry);
  }
}

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
    `INSERT INTO audit_events (at, event, user_id, username, session_id, ip, user_agent, outcome, reason, actor_id, actor_username)
     SELECT $1::timestamptz, * FROM unnest($2::text[], $3::uuid[], $4::text[], $5::uuid[], $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[], $11::text[])`,
    [
      at,
      column('event'),
      column('userId'),
      column('username'),
      column('sessionId'),
      column('ip'),
      column('userAgent'),
      column('outcome'),
      column('reason'),
      column('actorId'),
      column('actorUsername'),
    ],
  );
}

export function clientAudit(client: ClientInfo): { ip: string | null; userAgent: string | null } {
  return { ip: client.ip, userAgent: client.userAgent };
}

export function isUniqueViolation(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as { code?: unknown }).code === '23505';
}
