import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { lockDataDir } from './data_dir_lock.js';
import type { Database } from './database.js';
import { openPgliteDatabase } from './pglite_database.js';

/** Thrown when group or others can reach the data directory: it holds the private signing keys. */
export class DataDirModeError extends Error {
  override readonly name = 'DataDirModeError';
  constructor(dir: string, open: string[]) {
    super(
      `the data directory ${dir} can be reached by other users (${open.slice(0, 3).join(', ')}${open.length > 3 ? ', …' : ''}); ` +
        `it holds the private signing keys, so nothing was started. Fix it with: chmod -R go-rwx ${quote(dir)}`,
    );
  }
}

/**
 * The embedded data directory (`<dir>/db` is PGlite's), checked private, then
 * locked for this process and opened. Like PostgreSQL, this refuses a data
 * directory that group or others can enter: a copied or restored one (0755) let
 * another local user read the signing key out of a WAL segment.
 */
export async function openDataDir(dir: string): Promise<{ db: Database; release: () => void }> {
  assertPrivateDataDir(dir);
  const release = lockDataDir(dir);
  try {
    return { db: await openPgliteDatabase(join(dir, 'db')), release };
  } catch (error) {
    release();
    throw error;
  }
}

/**
 * Every directory from `dir` down must be for its owner alone. Files need no
 * check of their own: nobody else can reach them through a 0700 directory (and
 * PGlite's fopen() makes some of them 0644 whatever the umask).
 */
export function assertPrivateDataDir(dir: string): void {
  const open: string[] = [];
  const seen = new Set<string>();
  const walk = (path: string) => {
    let stat: ReturnType<typeof statSync>;
    try {
      stat = statSync(path); // follows symbolic links: a linked directory is checked where it really is
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // a new data dir is made private
      throw error;
    }
    if (!stat.isDirectory() || seen.has(`${stat.dev}:${stat.ino}`)) return;
    seen.add(`${stat.dev}:${stat.ino}`);
    if ((stat.mode & 0o077) !== 0) open.push(`${path} is ${(stat.mode & 0o777).toString(8).padStart(4, '0')}`);
    for (const entry of readdirSync(path, { withFileTypes: true })) {
      if (entry.isDirectory() || entry.isSymbolicLink()) walk(join(path, entry.name));
    }
  };
  walk(dir);
  if (open.length) throw new DataDirModeError(dir, open);
}

function quote(path: string): string {
  return /^[\w./-]+$/.test(path) ? path : `'${path.replaceAll("'", `'\\''`)}'`;
}
