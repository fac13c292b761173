import { join } from 'node:path';
import { lockDataDir, MEMORY_DATA_DIR, migrate, openPgliteDatabase, openPostgresDatabase } from '@tessera/server';

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
    release = lockDataDir(dir);
    db = await openPgliteDatabase(join(dir, 'db'));
  }
  try {
    const { applied } = await migrate(db);
    out.write(json ? `${JSON.stringify({ applied })}\n` : applied.length ? `applied migrations ${applied.join(', ')}\n` : 'the database is up to date\n');
  } finally {
    await db.close();
    release();
  }
}
