#!/usr/bin/env node
// Builds dist/pglite-template.tar.gz: an initialised, empty PGlite data directory.
// PGlite's initdb takes 5-12 s and ~600 MB; loading this template instead makes a
// first start (and every in-memory database) about as quick as a restart.
// Skipped when the template already matches the installed PGlite.
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PGlite } from '@electric-sql/pglite';
import { migrate } from '../dist/store/migrations.js';
import { MIGRATED_TEMPLATE_FILE, POSTGRESQL_CONF, TEMPLATE_FILE, TEMPLATE_STAMP_FILE, templateStamp } from '../dist/store/pglite_template.js';

const stamp = await templateStamp();
try {
  if ((await readFile(fileURLToPath(TEMPLATE_STAMP_FILE), 'utf8')) === JSON.stringify(stamp)) process.exit(0);
} catch {}

const dir = await mkdtemp(join(tmpdir(), 'tessera-template-'));
try {
  const db = await PGlite.create(join(dir, 'db'), { postgresqlconf: POSTGRESQL_CONF });
  const tarball = await db.dumpDataDir('gzip');
  await writeFile(fileURLToPath(TEMPLATE_FILE), Buffer.from(await tarball.arrayBuffer()));
  // Then every migration, for new data directories (the revocation feed's epoch is made anew on unpack).
  const result = (r) => ({ rows: r.rows, rowCount: r.affectedRows || r.rows.length });
  await migrate({
    kind: 'pglite',
    query: async (sql, params = []) => result(await db.query(sql, params)),
    transaction: (fn) => db.transaction((tx) => fn({ query: async (sql, params = []) => result(await tx.query(sql, params)) })),
    exec: async (sql) => void (await db.exec(sql)),
    close: () => db.close(),
  });
  const migrated = await db.dumpDataDir('gzip');
  await db.close();
  await writeFile(fileURLToPath(MIGRATED_TEMPLATE_FILE), Buffer.from(await migrated.arrayBuffer()));
  await writeFile(fileURLToPath(TEMPLATE_STAMP_FILE), JSON.stringify(stamp));
  console.log(`@tessera/server: PGlite ${stamp.pglite} data-dir template built`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
