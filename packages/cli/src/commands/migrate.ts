import { existsSync } from 'node:fs';
import { join } from 'node:path';
import {
  ADMIN_SOCKET,
  callAdminChannel,
  DataDirInUseError,
  MEMORY_DATA_DIR,
  migrate,
  openDataDir,
  openPgliteDatabase,
  openPostgresDatabase,
} from '@tessera/server';

/** `tessera migrate`: applies the database migrations and says which. */
export async function migrateCommand(
  values: { 'data-dir'?: string; 'database-url'?: string },
  json: boolean,
  out: NodeJS.WritableStream,
): Promise<void> {
  let release = () => {};
  let db: Awaited<ReturnType<typeof openPgliteDatabase>>;
  if (values['database-url']) {
    db = await openPostgresDatabase({ url: values['database-url'], poolSize: 1 });
  } else if (values['data-dir'] === MEMORY_DATA_DIR) {
    db = await openPgliteDatabase(undefined);
  } else {
    const dir = values['data-dir'] ?? './.tessera';
    try {
      ({ db, release } = await openDataDir(dir));
    } catch (error) {
      // A running server migrated its database when it started; say whether that is all this release has.
      const socket = join(dir, ADMIN_SOCKET);
      if (!(error instanceof DataDirInUseError) || !existsSync(socket)) throw error;
      const { pending } = (await callAdminChannel(socket, { op: 'migrations' })) as { pending: number[] };
      if (pending.length) throw new Error(`${error.message}; migrations ${pending.join(', ')} are pending: stop it, then run tessera migrate (or start this release's tessera serve, which migrates at start)`);
      out.write(json ? `${JSON.stringify({ applied: [] })}\n` : 'the database is up to date (the running tessera serve migrated it at start)\n');
      return;
    }
  }
  try {
    const { applied } = await migrate(db);
    out.write(json ? `${JSON.stringify({ applied })}\n` : applied.length ? `applied migrations ${applied.join(', ')}\n` : 'the database is up to date\n');
  } finally {
    await db.close();
    release();
  }
}
