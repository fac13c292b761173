import { isSealed } from '../keys/key_encryption.js';
import type { Database } from './database.js';
import type { SigningKeyRecord } from './records.js';
import { type KeyRow, toKey } from './rows.js';
import type { Writer } from './writer.js';

/** Instances that start together agree on one generated key under this advisory lock. */
const SIGNING_KEY_LOCK = 0x7e55e7b;

/** The signing-key ring as stored. */
export class SigningKeysStore {
  readonly #db: Database;
  readonly #writer: Writer;

  constructor(db: Database, writer: Writer) {
    this.#db = db;
    this.#writer = writer;
  }

  async list(): Promise<SigningKeyRecord[]> {
    const { rows } = await this.#db.query<KeyRow>('SELECT * FROM signing_keys ORDER BY activates_at, created_at, kid');
    return rows.map(toKey);
  }

  /** Adds a key that is published now and signs from `activatesAt`. */
  async add(
    key: Omit<SigningKeyRecord, 'createdAt' | 'retiredAt' | 'activatesAt'>,
    input: { now: Date; activatesAt: Date; reason: string },
  ): Promise<SigningKeyRecord> {
    return this.#writer.write(input.now, async (tx, log) => {
      const { rows } = await tx.query<KeyRow>(
        `INSERT INTO signing_keys (kid, alg, public_jwk, private_jwk, created_at, activates_at)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING *`,
        [key.kid, key.alg, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), input.now, input.activatesAt],
      );
      await log({ event: 'key.rotated', outcome: 'success', reason: `${input.reason}: ${key.alg} key ${key.kid}, signs from ${input.activatesAt.toISOString()}` });
      return toKey(rows[0]!);
    });
  }

  /** Takes a key out of the JWKS at once. Returns false when there is no live key `kid`. */
  async retire(kid: string, now: Date): Promise<boolean> {
    return this.#writer.write(now, async (tx, log) => {
      const { rowCount } = await tx.query('UPDATE signing_keys SET retired_at = $2 WHERE kid = $1 AND retired_at IS NULL', [kid, now]);
      if (rowCount === 0) return false;
      await log({ event: 'key.retired', outcome: 'success', reason: `key ${kid} retired` });
      return true;
    });
  }

  /**
   * Seals every private key still stored in the clear, each row only if it is
   * still the plaintext that was read (another instance may be sealing too).
   * Returns the kids it sealed, each with a `key.sealed` audit row.
   */
  async sealAll(now: Date, seal: (privateJwk: Record<string, unknown>) => Promise<Record<string, unknown>>): Promise<string[]> {
    const plain = (await this.list()).filter((k) => !isSealed(k.privateJwk));
    const sealed: string[] = [];
    for (const key of plain) {
      const done = await this.#writer.write(now, async (tx, log) => {
        const { rowCount } = await tx.query(
          `UPDATE signing_keys SET private_jwk = $2 WHERE kid = $1 AND NOT (private_jwk ? 'sealed')`,
          [key.kid, JSON.stringify(await seal(key.privateJwk))],
        );
        if (rowCount === 0) return false;
        await log({ event: 'key.sealed', outcome: 'success', reason: `${key.alg} key ${key.kid} was stored in the clear; sealed with the key-encryption key` });
        return true;
      });
      if (done) sealed.push(key.kid);
    }
    return sealed;
  }

  /**
   * Rewrites the signing-key table and moves the write-ahead log on, so the old
   * row versions (which held private keys in the clear) leave the data files and
   * the WAL segments that carried them are recycled and overwritten.
   */
  async purgeOldVersions(): Promise<void> {
    await this.#db.exec('VACUUM FULL signing_keys');
    await this.#db.exec('CHECKPOINT');
    for (let i = 0; i < 3; i++) {
      await this.#db.query('SELECT pg_switch_wal()');
      await this.#db.exec('CHECKPOINT');
    }
  }

  /**
   * Returns the newest live key for `alg`, creating one with `generate` if there is
   * none. An advisory lock makes instances that start together agree on one key.
   */
  async ensure(
    alg: string,
    now: Date,
    generate: () => Promise<Omit<SigningKeyRecord, 'createdAt' | 'retiredAt' | 'activatesAt'>>,
  ): Promise<SigningKeyRecord> {
    return this.#writer.write(now, async (tx, log) => {
      await tx.query('SELECT pg_advisory_xact_lock($1)', [SIGNING_KEY_LOCK]);
      const existing = await tx.query<KeyRow>(
        'SELECT * FROM signing_keys WHERE alg = $1 AND retired_at IS NULL AND activates_at <= $2 ORDER BY activates_at DESC, kid LIMIT 1',
        [alg, now],
      );
      if (existing.rows[0]) return toKey(existing.rows[0]);
      const key = await generate();
      const { rows } = await tx.query<KeyRow>(
        'INSERT INTO signing_keys (kid, alg, public_jwk, private_jwk, created_at, activates_at) VALUES ($1, $2, $3, $4, $5, $5) RETURNING *',
        [key.kid, key.alg, JSON.stringify(key.publicJwk), JSON.stringify(key.privateJwk), now],
      );
      await log({ event: 'key.rotated', outcome: 'success', reason: `generated ${key.alg} key ${key.kid}` });
      return toKey(rows[0]!);
    });
  }
}
