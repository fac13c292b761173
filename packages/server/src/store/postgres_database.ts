import pg from 'pg';
import { type Database, DatabaseUnavailableError, isConnectionFailure, type Queryable, type QueryResult } from './database.js';

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
  const wrap = (q: pg.Pool | pg.PoolClient): Queryable => ({
    async query<Row>(sql: string, params: unknown[] = []): Promise<QueryResult<Row>> {
      try {
        const result = await q.query(sql, params);
        return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length };
      } catch (error) {
        throw classify(error);
      }
    },
  });
  const root = wrap(pool);
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
        const result = await fn(wrap(client));
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
