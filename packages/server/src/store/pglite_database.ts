import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import type { Database, Queryable, QueryResult } from './database.js';
import { POSTGRESQL_CONF, pgliteTemplate, unpackPgliteTemplate } from './pglite_template.js';

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
    // PGlite writes files (WAL segments, relation files) for as long as it runs, and the
    // WAL holds private signing keys: every file this process creates is for its user alone.
    process.umask(0o077);
    await createDataDir(dataDir);
  }
  // In memory, the template spares every database initdb's seconds and ~400 MB.
  const loadDataDir = dataDir === undefined ? await pgliteTemplate() : undefined;
  const db = await PGlite.create(dataDir ?? 'memory://', { postgresqlconf: POSTGRESQL_CONF, loadDataDir });
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
 * A new database comes from the template `npm run build` made, unpacked in a
 * fraction of a second. Without one (another PGlite release), initdb runs.
 */
async function createDataDir(dataDir: string): Promise<void> {
  if (existsSync(join(dataDir, 'PG_VERSION'))) return;
  await mkdir(dirname(dataDir), { recursive: true, mode: 0o700 });
  // An empty directory (made by hand, or left by an interrupted initdb that never wrote a file) is taken over.
  if (existsSync(dataDir) && (await readdir(dataDir)).length === 0) await rmdir(dataDir);
  if (!existsSync(dataDir) && (await unpackPgliteTemplate(dataDir))) return;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await initializeOutOfProcess(dataDir);
}

/**
 * Creating a database (initdb) takes PGlite about 600 MB that the process never
 * gives back. Do it once in a short-lived child process, so the server that then
 * opens the ready database stays small. Its files are for this user alone.
 */
async function initializeOutOfProcess(dataDir: string): Promise<void> {
  const pglite = import.meta.resolve('@electric-sql/pglite');
  const script = `process.umask(0o077);
const { PGlite } = await import(${JSON.stringify(pglite)});
const db = await PGlite.create(${JSON.stringify(dataDir)}, { postgresqlconf: ${JSON.stringify(POSTGRESQL_CONF)} });
await db.close();`;
  await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 120_000 });
}
