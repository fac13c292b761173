import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { PGlite } from '@electric-sql/pglite';

/**
 * PostgreSQL's default 128 MB of shared buffers is sized for a database server;
 * embedded in an auth server process, 16 MB keeps the idle footprint small.
 */
const POSTGRESQL_CONF = ['shared_buffers = 16MB'];
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
  if (dataDir !== undefined) {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    await initializeOutOfProcess(dataDir);
  }
  const db = await PGlite.create(dataDir ?? 'memory://', { postgresqlconf: POSTGRESQL_CONF });
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

/**
 * Creating a database (initdb) takes PGlite about 600 MB that the process never
 * gives back. Do it once in a short-lived child process, so the server that then
 * opens the ready database stays small.
 */
async function initializeOutOfProcess(dataDir: string): Promise<void> {
  if (existsSync(join(dataDir, 'PG_VERSION'))) return;
  const pglite = import.meta.resolve('@electric-sql/pglite');
  const script = `const { PGlite } = await import(${JSON.stringify(pglite)});
const db = await PGlite.create(${JSON.stringify(dataDir)}, { postgresqlconf: ${JSON.stringify(POSTGRESQL_CONF)} });
await db.close();`;
  await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 120_000 });
}
