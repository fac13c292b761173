import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { PGlite } from '@electric-sql/pglite';
import { PreparedStatements } from './pglite_statements.js';

let pg: PGlite;
before(async () => {
  pg = await PGlite.create();
  await pg.exec(`CREATE TABLE things (
    id uuid PRIMARY KEY, name text NOT NULL UNIQUE, tags text[], doc jsonb, at timestamptz, n int8, ok boolean, raw bytea, gone text)`);
});
after(() => pg.close());

const prepared = (rows: { count: number }[]) => rows[0]!.count;

test('prepared statements give the same rows as PGlite.query, every column type the store uses', async () => {
  const statements = new PreparedStatements(pg);
  const at = new Date('2026-12-04T03:04:05.678Z');
  const insert = 'INSERT INTO things (id, name, tags, doc, at, n, ok, raw, gone) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING *';
  const params = ['0b6a3f7e-3c44-4a53-9a55-2d1c1f0e9d11', 'first', ['a', 'b "c"', 'd,e'], { k: [1, 'x'] }, at, 42, true, new Uint8Array([0, 1, 255]), null];
  const inserted = await statements.query(insert, params);
  assert.equal(inserted.affectedRows, 1);
  const viaQuery = await pg.query('SELECT * FROM things WHERE id = $1', [params[0]]);
  assert.deepEqual(inserted.rows, viaQuery.rows);
  const row = inserted.rows[0] as Record<string, unknown>;
  assert.deepEqual(row.tags, ['a', 'b "c"', 'd,e']);
  assert.deepEqual(row.doc, { k: [1, 'x'] });
  assert.deepEqual(row.at, at);
  assert.equal(row.ok, true);
  assert.deepEqual(row.raw, new Uint8Array([0, 1, 255]));
  assert.equal(row.gone, null);
  // The second run of the same text uses the prepared statement, with the same result.
  const again = await statements.query('SELECT * FROM things WHERE id = $1', [params[0]]);
  const againPrepared = await statements.query('SELECT * FROM things WHERE id = $1', [params[0]]);
  assert.deepEqual(again.rows, viaQuery.rows);
  assert.deepEqual(againPrepared.rows, viaQuery.rows);
  assert.equal(statements.size, 2);
  await pg.exec('DELETE FROM things');
});

test('a failing statement reports PostgreSQL’s error and leaves the connection usable', async () => {
  const statements = new PreparedStatements(pg);
  const insert = 'INSERT INTO things (id, name) VALUES ($1, $2)';
  await statements.query(insert, ['2f9d7c55-9a43-4b7e-8f5c-0f7bb8c0e001', 'dup']);
  await assert.rejects(statements.query(insert, ['2f9d7c55-9a43-4b7e-8f5c-0f7bb8c0e002', 'dup']), { code: '23505', constraint: 'things_name_key' });
  await assert.rejects(statements.query('SELEC nothing', []), { code: '42601' });
  await assert.rejects(statements.query('SELECT $1::int', ['not a number']), { code: '22P02' });
  const { rows } = await statements.query('SELECT count(*)::int AS count FROM things', []);
  assert.equal(prepared(rows as { count: number }[]), 1);
  await pg.exec('DELETE FROM things');
});

test('at most `capacity` statements stay prepared: one past the cap closes the least recently used', async () => {
  const capacity = 8;
  const statements = new PreparedStatements(pg, capacity);
  const listed = async () =>
    (await pg.query<{ count: number }>("SELECT count(*)::int AS count FROM pg_prepared_statements WHERE name LIKE 'tessera\\_%'")).rows[0]!.count;
  const before = await listed();
  for (let i = 0; i <= capacity; i++) {
    const { rows } = await statements.query(`SELECT ${i}::int AS i, $1::text AS t`, ['x']);
    assert.deepEqual(rows, [{ i, t: 'x' }]);
  }
  assert.equal(statements.size, capacity);
  assert.equal((await listed()) - before, capacity);
  // The evicted first statement is prepared again when it is used again.
  assert.deepEqual((await statements.query('SELECT 0::int AS i, $1::text AS t', ['y'])).rows, [{ i: 0, t: 'y' }]);
  assert.equal(statements.size, capacity);
  assert.equal((await listed()) - before, capacity);
  await statements.forgetAll();
});

test('a schema change through the statements plans every statement anew', async () => {
  const statements = new PreparedStatements(pg);
  await statements.query('INSERT INTO things (id, name) VALUES ($1, $2)', ['5b4b5a0e-6d7f-4c9f-8f1e-3a2b1c0d9e01', 'one']);
  const before = await statements.query('SELECT * FROM things', []);
  assert.ok(!('extra' in (before.rows[0] as object)));
  await statements.query('ALTER TABLE things ADD COLUMN extra text', []);
  assert.equal(statements.size, 0);
  const afterChange = await statements.query('SELECT * FROM things', []);
  assert.equal((afterChange.rows[0] as { extra: unknown }).extra, null);
  await pg.exec('ALTER TABLE things DROP COLUMN extra; DELETE FROM things');
});

test('a schema change the statements did not see fails that statement once, then it is prepared again', async () => {
  const statements = new PreparedStatements(pg);
  await statements.query('SELECT * FROM things', []);
  await pg.exec('ALTER TABLE things ADD COLUMN unseen text');
  await assert.rejects(statements.query('SELECT * FROM things', []), { code: '0A000' });
  const { fields } = await statements.query('SELECT * FROM things', []);
  assert.ok(fields.some((f) => f.name === 'unseen'));
  await pg.exec('ALTER TABLE things DROP COLUMN unseen');
});
