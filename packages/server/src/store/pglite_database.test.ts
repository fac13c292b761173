import assert from 'node:assert/strict';
import { readdirSync, statSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { migrate } from './migrations.js';
import { openPgliteDatabase } from './pglite_database.js';
import { pgliteTemplate, TEMPLATE_STAMP_FILE } from './pglite_template.js';

/**
 * Paths group or others can open. A file inside a 0700 directory is out of their reach
 * whatever its own mode (PGlite's fopen() makes pg_internal.init 0644), so every
 * directory must be private, and so must the files that carry data: the WAL and relations.
 */
function reachableByOthers(dir: string): string[] {
  const found: string[] = [];
  const walk = (path: string) => {
    const stat = statSync(path);
    const open = (stat.mode & 0o077) !== 0;
    if (stat.isDirectory()) {
      if (open) found.push(path);
      for (const name of readdirSync(path)) walk(join(path, name));
    } else if (open && !path.endsWith('pg_internal.init')) found.push(path);
  };
  walk(dir);
  return found;
}

test('a new data dir comes from the build’s template, private to this user, and holds a working database', async () => {
  assert.ok(await pgliteTemplate(), 'npm run build makes dist/pglite-template.tar.gz');
  const dir = await mkdtemp(join(tmpdir(), 'tessera-pglite-'));
  try {
    const dataDir = join(dir, 'data', 'db');
    const db = await openPgliteDatabase(dataDir);
    assert.deepEqual(await migrate(db), { applied: [] }, 'the template holds every migration: a first start runs no DDL');
    const { rows } = await db.query<{ n: number }>('SELECT 1 AS n');
    assert.equal(rows[0]?.n, 1);
    const epoch = async (d: typeof db) => (await d.query<{ epoch: string }>('SELECT epoch FROM revocation_counter')).rows[0]?.epoch;
    const other = await openPgliteDatabase(join(dir, 'other', 'db'));
    assert.notEqual(await epoch(other), await epoch(db), 'each database from the template numbers its revocation feed under its own epoch');
    await other.close();
    const first = await epoch(db);
    await db.close();
    assert.deepEqual(reachableByOthers(join(dir, 'data')), []);
    // No half-unpacked sibling is left behind.
    assert.deepEqual(readdirSync(join(dir, 'data')), ['db']);
    const again = await openPgliteDatabase(dataDir);
    assert.equal((await again.query<{ n: number }>('SELECT 1 AS n')).rows[0]?.n, 1);
    assert.equal(await epoch(again), first, 'a restart keeps its epoch');
    await again.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an in-memory database starts from the template too', async () => {
  const db = await openPgliteDatabase(undefined);
  await migrate(db);
  assert.equal((await db.query<{ n: number }>('SELECT count(*)::int AS n FROM users')).rows[0]?.n, 0);
  await db.close();
});

test('a template stamped by another PGlite release is not used', async () => {
  const { readFile } = await import('node:fs/promises');
  const stamp = await readFile(TEMPLATE_STAMP_FILE, 'utf8');
  try {
    await writeFile(TEMPLATE_STAMP_FILE, JSON.stringify({ pglite: '0.0.0', conf: [] }));
    assert.equal(await pgliteTemplate(), undefined);
  } finally {
    await writeFile(TEMPLATE_STAMP_FILE, stamp);
  }
  assert.ok(await pgliteTemplate());
});
