import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { createDatabase, type PostgresServer, startPostgres } from '../../../../test/support/postgres_server.js';
import { type Database, DatabaseUnavailableError } from './database.js';
import { openPostgresDatabase } from './postgres_database.js';

let server: PostgresServer;
let url: string;
const open: Database[] = [];
before(async () => {
  server = await startPostgres();
  url = await createDatabase(server.url, 'prepared_statements');
});
after(async () => {
  for (const db of open) await db.close();
  await server?.stop();
});

async function connect(): Promise<Database> {
  // One connection: the statements a test prepares are on the connection it reads next.
  const db = await openPostgresDatabase({ url, poolSize: 1 });
  open.push(db);
  return db;
}

test("the store's statements are prepared once per connection; DDL and session control are not", async () => {
  const db = await connect();
  await db.query('CREATE TABLE planned (a int)');
  await db.query('INSERT INTO planned (a) VALUES ($1)', [1]);
  for (let i = 0; i < 3; i++) assert.deepEqual((await db.query('SELECT a FROM planned WHERE a = $1', [1])).rows, [{ a: 1 }]);
  const { rows } = await db.query<{ statement: string }>('SELECT statement FROM pg_prepared_statements ORDER BY statement');
  assert.deepEqual(
    rows.map((r) => r.statement),
    ['INSERT INTO planned (a) VALUES ($1)', 'SELECT a FROM planned WHERE a = $1', 'SELECT statement FROM pg_prepared_statements ORDER BY statement'],
  );
});

test('a table changed by another instance under a prepared SELECT * (a rolling migration): the query is answered, and so are the next ones', async () => {
  const a = await connect();
  const b = await connect();
  await a.query('CREATE TABLE rolling (a int)');
  await a.query('INSERT INTO rolling (a) VALUES (1)');
  assert.deepEqual((await a.query('SELECT * FROM rolling')).rows, [{ a: 1 }]);
  await b.exec('ALTER TABLE rolling ADD COLUMN b int DEFAULT 7');
  assert.deepEqual((await a.query('SELECT * FROM rolling')).rows, [{ a: 1, b: 7 }], 'answered at once (run unnamed)');
  assert.deepEqual((await a.query('SELECT * FROM rolling')).rows, [{ a: 1, b: 7 }], 'prepared again under a new name');

  // Inside a transaction the error has aborted it: the caller gets "unavailable" (503, retry), then it works.
  await b.exec('ALTER TABLE rolling ADD COLUMN c int DEFAULT 9');
  await assert.rejects(
    a.transaction((tx) => tx.query('SELECT * FROM rolling')),
    (error: unknown) => error instanceof DatabaseUnavailableError,
  );
  assert.deepEqual((await a.transaction((tx) => tx.query('SELECT * FROM rolling'))).rows, [{ a: 1, b: 7, c: 9 }]);
});

test('other statement errors pass through unchanged, named or not, and leave the connection usable', async () => {
  const db = await connect();
  await db.query('CREATE TABLE uniq (a int PRIMARY KEY)');
  await db.query('INSERT INTO uniq (a) VALUES ($1)', [1]);
  await assert.rejects(db.query('INSERT INTO uniq (a) VALUES ($1)', [1]), (e: { code?: string }) => e.code === '23505');
  await assert.rejects(db.query('SELECT nope FROM uniq'), (e: { code?: string }) => e.code === '42703');
  // 0A000 that is not a changed plan (a feature PostgreSQL lacks) is the statement's own error.
  await assert.rejects(db.query('SELECT a FROM uniq u LEFT JOIN uniq v USING (a) FOR UPDATE OF v'), (e: { code?: string }) => e.code === '0A000');
  assert.deepEqual((await db.query('SELECT a FROM uniq WHERE a = $1', [1])).rows, [{ a: 1 }]);
});

test('prepared statements that vanish from the server connection (a pooler in transaction mode): answered unnamed, and no name is used again', async () => {
  const db = await connect();
  await db.query('CREATE TABLE pooled (a int)');
  await db.query('INSERT INTO pooled (a) VALUES (1)');
  assert.deepEqual((await db.query('SELECT a FROM pooled')).rows, [{ a: 1 }]);
  // What a pooler does: the next statement reaches a server connection without it.
  await db.exec('DEALLOCATE ALL');
  assert.deepEqual((await db.query('SELECT a FROM pooled')).rows, [{ a: 1 }]);
  assert.deepEqual((await db.query('INSERT INTO pooled (a) VALUES ($1) RETURNING a', [2])).rows, [{ a: 2 }]);
  assert.deepEqual((await db.query<{ n: string }>('SELECT count(*)::text AS n FROM pg_prepared_statements')).rows, [{ n: '0' }]);
});
