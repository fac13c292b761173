import type { Database } from './database.js';
import type { Writer } from './writer.js';

/** TOTP factors, recovery codes and MFA challenges. */
export class SecondFactorsStore {
  readonly #db: Database;
  readonly #writer: Writer;

  constructor(db: Database, writer: Writer) {
    this.#db = db;
    this.#writer = writer;
  }
}
