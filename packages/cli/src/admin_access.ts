import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  ADMIN_SOCKET,
  type AdminOp,
  type AdminRequest,
  type AdminResults,
  callAdminChannel,
  type Database,
  DataDirInUseError,
  MEMORY_DATA_DIR,
  migrate,
  openDataDir,
  openPgliteDatabase,
  openPostgresDatabase,
  parseKeyEncryptionKey,
  runAdminOperation,
  Store,
} from '@tessera/server';

export interface DatabaseFlags {
  'data-dir'?: string;
  'database-url'?: string;
  'key-encryption-key'?: string;
  /** Where reset links point when no running server answers (it knows its own). */
  'public-url'?: string;
}

/** Runs operator requests wherever the data lives, typed by the operation. */
export type Call = <K extends AdminOp>(request: Extract<AdminRequest, { op: K }>) => Promise<AdminResults[K]>;

/** Without a running server or --public-url, links point where `tessera serve` listens by default. */
const DEFAULT_PUBLIC_URL = 'http://localhost:4000';

/**
 * Reaches the data: with `--database-url`, the database directly (running
 * servers see the change through it); with an embedded data directory, the
 * database itself when no server holds it, or the running server's admin socket
 * when one does. If neither works, it says so and changes nothing.
 */
export async function withAdmin<T>(flags: DatabaseFlags, run: (call: Call) => Promise<T>): Promise<T> {
  const keyEncryptionKey = flags['key-encryption-key'] ? parseKeyEncryptionKey(flags['key-encryption-key']) : undefined;
  const direct = async (db: Database): Promise<T> => {
    try {
      await migrate(db);
      const store = new Store(db, auditLine);
      // No mailer here: a command that exits at once cannot retry a mail; it prints the link.
      const host = { store, now: Date.now, keyEncryptionKey, mailer: undefined, publicUrl: () => flags['public-url'] ?? DEFAULT_PUBLIC_URL };
      return await run((request) => runAdminOperation(host, request));
    } finally {
      await db.close();
    }
  };
  if (flags['database-url']) return direct(await openPostgresDatabase({ url: flags['database-url'], poolSize: 2 }));
  const dir = flags['data-dir'] ?? './.tessera';
  // memory:// is an empty database that lives as long as this command: nothing on disk.
  if (dir === MEMORY_DATA_DIR) return direct(await openPgliteDatabase(undefined));
  let opened: { db: Database; release: () => void };
  try {
    opened = await openDataDir(dir);
  } catch (error) {
    if (!(error instanceof DataDirInUseError)) throw error;
    const socket = join(dir, ADMIN_SOCKET);
    if (!existsSync(socket)) {
      throw new Error(`${error.message}, and it has no admin channel (${socket}) to act through; nothing was changed`);
    }
    return run(<K extends AdminOp>(request: Extract<AdminRequest, { op: K }>) => callAdminChannel(socket, request) as Promise<AdminResults[K]>);
  }
  try {
    return await direct(opened.db);
  } finally {
    opened.release();
  }
}

// Audit rows are in the database; the CLI's own output is the operator's log.
function auditLine(): void {}
