import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { MIGRATIONS } from './migrations.js';

/**
 * PostgreSQL's default 128 MB of shared buffers is sized for a database server;
 * embedded in an auth server process, 16 MB keeps the idle footprint small.
 */
export const POSTGRESQL_CONF = ['shared_buffers = 16MB'];

// Relative to the package root, so the same path works from src/store and dist/store.
export const TEMPLATE_FILE = new URL('../../dist/pglite-template.tar.gz', import.meta.url);
export const TEMPLATE_STAMP_FILE = new URL('../../dist/pglite-template.json', import.meta.url);
/**
 * The same database with every migration applied: a new data directory starts from it,
 * so a first start runs no DDL (PGlite's WebAssembly memory, grown by the migrations,
 * would never be given back: 60-80 MB of idle RSS). In memory, databases start empty
 * (tests build old schemas on them).
 */
export const MIGRATED_TEMPLATE_FILE = new URL('../../dist/pglite-template-migrated.tar.gz', import.meta.url);

/** What a template was made by: a template from another PGlite release is never used. */
export async function templateStamp(): Promise<{ pglite: string; conf: string[]; migrations: number[] }> {
  const entry = new URL(import.meta.resolve('@electric-sql/pglite'));
  const pkg = JSON.parse(await readFile(new URL('../package.json', entry), 'utf8')) as { version: string };
  return { pglite: pkg.version, conf: POSTGRESQL_CONF, migrations: MIGRATIONS.map((m) => m.version) };
}

async function templateIsCurrent(): Promise<boolean> {
  try {
    const [stamp, made] = await Promise.all([templateStamp(), readFile(TEMPLATE_STAMP_FILE, 'utf8')]);
    return made === JSON.stringify(stamp);
  } catch {
    return false;
  }
}

/**
 * The initialised, empty data directory that `npm run build` makes
 * (packages/server/scripts/build-pglite-template.mjs), as a gzipped tar; `undefined`
 * when it is missing or was made by another PGlite, and the caller runs initdb.
 */
export async function pgliteTemplate(): Promise<Blob | undefined> {
  if (!(await templateIsCurrent())) return undefined;
  try {
    return new Blob([await readFile(TEMPLATE_FILE)]);
  } catch {
    return undefined;
  }
}

/**
 * Makes `dataDir` (which must not exist) from the template, readable by this user
 * alone (the WAL will hold private signing keys). It is unpacked beside it and
 * renamed into place, so an interrupted unpack never leaves a half database.
 * Returns false when there is no usable template.
 */
export async function unpackPgliteTemplate(dataDir: string): Promise<boolean> {
  if (!(await templateIsCurrent())) return false;
  const partial = `${dataDir}.partial`;
  await rm(partial, { recursive: true, force: true });
  await mkdir(partial, { mode: 0o700 });
  let failure: Error | undefined;
  // tar loads here only: this runs in a short-lived child process, not in the server.
  const { extract } = await import('tar');
  // Synchronous: twice as fast as the streaming unpack, and nothing else runs before the database is open.
  extract({
    sync: true,
    file: fileURLToPath(MIGRATED_TEMPLATE_FILE),
    cwd: partial,
    preserveOwner: false,
    // The entries say 0666/0755; the data directory is for this user alone.
    filter: (_path, entry) => {
      if ('mode' in entry && typeof entry.mode === 'number') entry.mode &= 0o700;
      return true;
    },
    // PGlite writes absolute entry names (`/PG_VERSION`); tar makes them relative to `cwd`, and says so.
    onwarn: (code, message) => {
      if (code !== 'TAR_ENTRY_INFO') failure ??= new Error(`PGlite template: ${message}`);
    },
  });
  if (failure) throw failure;
  await rename(partial, dataDir);
  return true;
}
