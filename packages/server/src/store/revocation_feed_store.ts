import type { Database } from './database.js';

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

/** The revocation feed: revoked sessions numbered in commit order. */
export class RevocationFeedStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /** The revocation feed's epoch (which database's numbering) and its head (the last number committed). */
  async head(): Promise<{ epoch: string; head: number }> {
    const { rows } = await this.#db.query<{ epoch: string; position: string }>('SELECT epoch, position::text FROM revocation_counter');
    const row = rows[0];
    if (!row) throw new Error('revocation_counter is empty: the database was not migrated');
    return { epoch: row.epoch, head: Number(row.position) };
  }

  /**
   * Revocations numbered after `after` and made after `horizon`, in commit order, at
   * most `limit` of them, read in one snapshot together with that snapshot's head.
   * A row revoked before the horizon is skipped: its access tokens have expired.
   */
  async read(after: number, horizon: Date, limit: number, anchor = 0): Promise<FeedPage> {
    const { rows } = await this.#db.query<{ position: string | null; id: string | null; revoked_at: Date | null; head: string; epoch: string; anchor: string | null }>(
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
  async renewEpoch(old: string): Promise<void> {
    await this.#db.query(`UPDATE revocation_counter SET epoch = substr(replace(gen_random_uuid()::text, '-', ''), 1, 12) WHERE epoch = $1`, [old]);
  }

  /**
   * The lowest feed position among revocations made after `horizon`, or null: a reader
   * far behind may start just before it instead of scanning the whole history.
   */
  async start(horizon: Date): Promise<number | null> {
    const { rows } = await this.#db.query<{ start: string | null }>(
      'SELECT min(position)::text AS start FROM revocation_feed WHERE revoked_at > $1',
      [horizon],
    );
    return rows[0]?.start == null ? null : Number(rows[0].start);
  }
}
