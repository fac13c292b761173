import { randomBytes } from 'node:crypto';
import type { Database } from './database.js';

/** Random secrets every instance sharing the database must agree on. */
export class ServerSecretsStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /**
   * The secret called `name`, made (32 random bytes) by the first instance to ask:
   * instances starting together all read the one that was inserted first.
   */
  async get(name: string): Promise<Buffer> {
    await this.#db.query('INSERT INTO server_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [name, randomBytes(32)]);
    const { rows } = await this.#db.query<{ value: Uint8Array }>('SELECT value FROM server_secrets WHERE name = $1', [name]);
    return Buffer.from(rows[0]!.value);
  }
}
