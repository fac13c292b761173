import { mkdir } from 'node:fs/promises';
import { PGlite } from '@electric-sql/pglite';
import type { Database, Queryable, QueryResult } from './database.js';

/**
 * The embedded database: PostgreSQL compiled to WebAssembly, in this process.
 * PGlite serves one connection, so statements and transactions run one at a
 * time; that serial order is what makes its transactions as safe as row locks
 * on a real server.
 *
 * @param dataDir a directory for the database files, or `undefined` for memory only
 */
export async function openPgliteDatabase(dataDir: string | undefined): Promise<Database> {
  if (dataDir !== undefined) await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const db = await PGlite.create(dataDir ?? 'memory://');
  const wrap = (q: Pick<PGlite, 'query'>): Queryable => ({
    async query<Row>(sql: string, params: unknown[] = []): Promise<QueryResult<Row>> {
      const result = await q.query<Row>(sql, params);
      return { rows: result.rows, rowCount: result.affectedRows || result.rows.length };
    },
  });
  const root = wrap(db);
  return {
    kind: 'pglite',
    query: root.query,
    transaction: (fn) => db.transaction((tx) => fn(wrap(tx))),
    async exec(sql) {
      await db.exec(sql);
    },
    close: () => db.close(),
  };
}
