import { createHash } from 'node:crypto';
import pg from 'pg';
import { type Database, DatabaseUnavailableError, isConnectionFailure, isPlannable, type Queryable, type QueryResult } from './database.js';

export interface PostgresDatabaseOptions {
  /** `postgres://user:pass@host:port/db` */
  url: string;
  /** Connections in the pool. Default 10. */
  poolSize?: number;
}

/** A real PostgreSQL server through a `pg` connection pool. */
export async function openPostgresDatabase(options: PostgresDatabaseOptions): Promise<Database> {
  const pool = new pg.Pool({
    connectionString: options.url,
    max: options.poolSize ?? 10,
    connectionTimeoutMillis: 5_000,
    // An auth server must not hang on a dead database: fail fast, answer 503.
    query_timeout: 10_000,
  });
  // An idle client losing its connection emits 'error' on the pool; without a
  // listener that would crash the process. The next query reconnects.
  pool.on('error', () => {});
  const statements = new StatementNames();
  const wrap = (q: pg.Pool | pg.PoolClient, inTransaction: boolean): Queryable => ({
    async query<Row>(sql: string, params: unknown[] = []): Promise<QueryResult<Row>> {
      const name = statements.nameOf(sql);
      try {
        return asResult<Row>(name === undefined ? await q.query(sql, params) : await q.query({ name, text: sql, values: params }));
      } catch (error) {
        if (name === undefined) throw classify(error);
        if (isCachedPlanChange(error)) {
          // Another instance changed a table under a prepared `SELECT *` (a rolling
          // migration): every statement is prepared anew under new names from now on.
          statements.renew();
        } else if (isLostStatement(error)) {
          // A pooler between us and PostgreSQL (PgBouncer in transaction mode before
          // 1.21) hands each statement to any server connection: names cannot work.
          statements.disable();
        } else {
          throw classify(error);
        }
        // Inside a transaction the error has aborted it: the client is told to retry (503).
        if (inTransaction) throw new DatabaseUnavailableError(error);
        try {
          return asResult<Row>(await q.query(sql, params));
        } catch (retryError) {
          throw classify(retryError);
        }
      }
    },
  });
  const root = wrap(pool, false);
  // Check now, so a wrong URL is reported at start and not at the first request.
  await pool.query('SELECT 1');
  return {
    kind: 'postgres',
    query: root.query,
    async transaction(fn) {
      const client = await pool.connect().catch((error: unknown) => {
        throw classify(error);
      });
      try {
        await client.query('BEGIN');
        const result = await fn(wrap(client, true));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch(() => {});
        throw error;
      } finally {
        client.release();
      }
    },
    async exec(sql) {
      await pool.query(sql);
    },
    close: () => pool.end(),
  };
}

function asResult<Row>(result: pg.QueryResult): QueryResult<Row> {
  return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length };
}

/**
 * A statement error from the server (`pg.DatabaseError` with a SQLSTATE) passes
 * through; anything else from the driver (refused, reset, terminated, timed out)
 * means the database is not answering.
 */
function classify(error: unknown): unknown {
  if (error instanceof DatabaseUnavailableError) return error;
  if (error instanceof pg.DatabaseError && !isConnectionFailure(error.code)) return error;
  return new DatabaseUnavailableError(error);
}

/** "cached plan must not change result type" (0A000 is "feature not supported" in general: the routine tells them apart in any locale). */
function isCachedPlanChange(error: unknown): boolean {
  return error instanceof pg.DatabaseError && error.code === '0A000' && (error.routine === 'RevalidateCachedQuery' || /cached plan/i.test(error.message));
}

/** A prepared statement the server connection does not have (26000), or has from someone else (42P05). */
function isLostStatement(error: unknown): boolean {
  return error instanceof pg.DatabaseError && (error.code === '26000' || error.code === '42P05');
}

/**
 * Names for the store's statements, so that each connection parses and plans a
 * statement once instead of on every call (PostgreSQL spent more CPU planning the
 * refresh statement than running it). A name is the statement's hash under the
 * current generation: after a table changed under a prepared `SELECT *` (0A000),
 * `renew` moves every statement to new names, which each connection prepares afresh
 * (the old ones stay on connections until the pool recycles them). Beyond `capacity`
 * distinct texts, statements run unnamed; after `disable`, all of them do.
 */
class StatementNames {
  readonly #names = new Map<string, string>();
  #generation = 1;
  #capacity: number;

  constructor(capacity = 500) {
    this.#capacity = capacity;
  }

  nameOf(sql: string): string | undefined {
    let name = this.#names.get(sql);
    if (name === undefined) {
      if (this.#names.size >= this.#capacity || !isPlannable(sql)) return undefined;
      name = `tessera_${this.#generation}_${createHash('sha256').update(sql).digest('hex').slice(0, 24)}`;
      this.#names.set(sql, name);
    }
    return name;
  }

  renew(): void {
    this.#generation += 1;
    this.#names.clear();
  }

  disable(): void {
    this.#capacity = 0;
    this.#names.clear();
  }
}
