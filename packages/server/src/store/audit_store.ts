import type { Database } from './database.js';
import type { AuditEntry, AuditRecord } from './records.js';
import type { AuditRow } from './rows.js';
import type { Writer } from './writer.js';

/** The audit log. */
export class AuditStore {
  readonly #db: Database;
  readonly #writer: Writer;

  constructor(db: Database, writer: Writer) {
    this.#db = db;
    this.#writer = writer;
  }

  /** Records events that change nothing else (a failed login, a rate limit). */
  async append(now: Date, entries: AuditEntry[]): Promise<void> {
    await this.#writer.write(now, async (_tx, log) => {
      for (const entry of entries) await log(entry);
    });
  }

  /** Events (a user's own, or everyone's for admins), newest first; `before` is the `id` cursor of the last page. */
  async list(input: {
    userId?: string;
    username?: string;
    /** The acting admin's name (`actor_username`). */
    actor?: string;
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
    if (input.actor !== undefined) add('lower(actor_username) = lower(?)', input.actor);
    if (input.event !== undefined) add('event = ?', input.event);
    if (input.since !== undefined) add('at >= ?', input.since);
    if (input.before !== undefined) {
      params.push(input.before);
      where.push(`id < $${params.length}::bigint`);
    }
    const { rows } = await this.#db.query<AuditRow>(
      `SELECT id::text AS id, at, event, user_id, username, session_id, ip, user_agent, outcome, reason, actor_id, actor_username
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
      actorId: r.actor_id,
      actorUsername: r.actor_username,
    }));
  }
}
