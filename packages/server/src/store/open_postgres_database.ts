import type { Database } from './database.js';
import type { PostgresDatabaseOptions } from './postgres_database.js';

export type { PostgresDatabaseOptions };

/**
 * Connects to PostgreSQL (see `postgres_database.ts`). `pg` loads with this call, not
 * with the server: the embedded default never needs its 15 MB.
 */
export async function openPostgresDatabase(options: PostgresDatabaseOptions): Promise<Database> {
  return (await import('./postgres_database.js')).openPostgresDatabase(options);
}
