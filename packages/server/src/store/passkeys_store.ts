import type { Database } from './database.js';
import type { Writer } from './writer.js';

/** WebAuthn credentials and their single-use challenges. */
export class PasskeysStore {
  readonly #db: Database;
  readonly #writer: Writer;

  constructor(db: Database, writer: Writer) {
    this.#db = db;
    this.#writer = writer;
  }

  /** Placeholder until the passkey flows land: the number of passkeys a user has. */
  async count(userId: string): Promise<number> {
    const { rows } = await this.#db.query<{ n: string }>('SELECT count(*)::text AS n FROM passkeys WHERE user_id = $1', [userId]);
    void this.#writer;
    return Number(rows[0]?.n ?? 0);
  }
}
