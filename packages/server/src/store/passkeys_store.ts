import type { Database } from './database.js';
import type { AuditEntry } from './records.js';
import { isUniqueViolation, type Writer } from './writer.js';

/** A WebAuthn credential as stored: id and public key as the authenticator gave them (base64url). */
export interface PasskeyRecord {
  id: string;
  userId: string;
  credentialId: string;
  /** The COSE public key, base64url. */
  publicKey: string;
  /** The last signature counter seen (0 for authenticators that keep none, such as synced passkeys). */
  counter: number;
  transports: string[];
  /** `singleDevice` or `multiDevice` (may be synced). */
  deviceType: string | null;
  backedUp: boolean;
  name: string;
  createdAt: Date;
  lastUsedAt: Date | null;
}

/** A new credential, verified, to store. */
export interface NewPasskey {
  id: string;
  credentialId: string;
  publicKey: string;
  counter: number;
  transports: string[];
  deviceType: string;
  backedUp: boolean;
}

export type ChallengePurpose = 'registration' | 'authentication';

/** Why the store refused a change; the transaction rolled back, nothing changed. */
export type PasskeyRefusal = 'challenge' | 'duplicate' | 'too_many' | 'gone' | 'counter';

interface PasskeyRow {
  id: string;
  user_id: string;
  credential_id: string;
  public_key: string;
  counter: string | number;
  transports: string[] | null;
  device_type: string | null;
  backed_up: boolean;
  name: string;
  created_at: Date;
  last_used_at: Date | null;
}

/** Expired challenges a new one sweeps away: the table keeps itself small without a job. */
const SWEEP = 20;
/** Registration ceremonies a user may have open at once (tabs); older ones are dropped. */
const OPEN_REGISTRATIONS = 5;

/** Thrown inside a transaction to roll it back and report why. */
class Refused extends Error {
  constructor(readonly reason: PasskeyRefusal) {
    super(reason);
  }
}

/**
 * WebAuthn credentials and their single-use challenges. A challenge is consumed by
 * one `DELETE … RETURNING` in the same transaction as the change it authorises
 * (a new credential, a counter step): of two requests with one challenge, one wins,
 * and a refused request rolls back whole, its challenge included.
 */
export class PasskeysStore {
  readonly #db: Database;
  readonly #writer: Writer;

  constructor(db: Database, writer: Writer) {
    this.#db = db;
    this.#writer = writer;
  }

  /** The number of passkeys a user has. */
  async count(userId: string): Promise<number> {
    const { rows } = await this.#db.query<{ n: string }>('SELECT count(*)::text AS n FROM passkeys WHERE user_id = $1', [userId]);
    return Number(rows[0]?.n ?? 0);
  }

  /** A user's passkeys, oldest first. */
  async list(userId: string): Promise<PasskeyRecord[]> {
    const { rows } = await this.#db.query<PasskeyRow>('SELECT * FROM passkeys WHERE user_id = $1 ORDER BY created_at, id', [userId]);
    return rows.map(toPasskey);
  }

  async findByCredentialId(credentialId: string): Promise<PasskeyRecord | null> {
    const { rows } = await this.#db.query<PasskeyRow>('SELECT * FROM passkeys WHERE credential_id = $1', [credentialId]);
    return rows[0] ? toPasskey(rows[0]) : null;
  }

  /**
   * The user of that name (compared as login compares it) and the descriptors of its
   * credentials, in one statement whether or not the user exists; null for no such user.
   */
  async credentialsOf(username: string): Promise<{ userId: string; credentials: { credentialId: string; transports: string[] }[] } | null> {
    const { rows } = await this.#db.query<{ user_id: string; credential_id: string | null; transports: string[] | null }>(
      `SELECT u.id AS user_id, p.credential_id, p.transports
         FROM users u LEFT JOIN passkeys p ON p.user_id = u.id
        WHERE lower(u.username) = lower($1)
        ORDER BY p.created_at, p.id`,
      [username],
    );
    if (!rows[0]) return null;
    const credentials = rows.filter((r) => r.credential_id !== null).map((r) => ({ credentialId: r.credential_id!, transports: r.transports ?? [] }));
    return { userId: rows[0].user_id, credentials };
  }

  /**
   * Stores a challenge (base64url, as the options carry it). Sweeps a few expired ones
   * on the way, and keeps a user's open registration ceremonies to a handful.
   */
  async createChallenge(input: { challenge: string; purpose: ChallengePurpose; userId: string | null; named?: boolean; now: Date; expiresAt: Date }): Promise<void> {
    await this.#writer.write(input.now, async (tx) => {
      // SKIP LOCKED: concurrent sweeps take different rows and never wait on (or deadlock with) each other.
      await tx.query(
        'DELETE FROM webauthn_challenges WHERE challenge IN (SELECT challenge FROM webauthn_challenges WHERE expires_at <= $1 LIMIT $2 FOR UPDATE SKIP LOCKED)',
        [input.now, SWEEP],
      );
      if (input.purpose === 'registration' && input.userId !== null) {
        await tx.query(
          `DELETE FROM webauthn_challenges WHERE purpose = 'registration' AND user_id = $1 AND challenge NOT IN (
             SELECT challenge FROM webauthn_challenges WHERE purpose = 'registration' AND user_id = $1 ORDER BY created_at DESC LIMIT $2)`,
          [input.userId, OPEN_REGISTRATIONS - 1],
        );
      }
      await tx.query('INSERT INTO webauthn_challenges (challenge, purpose, user_id, created_at, expires_at, named) VALUES ($1, $2, $3, $4, $5, $6)', [
        input.challenge,
        input.purpose,
        input.userId,
        input.now,
        input.expiresAt,
        input.named ?? false,
      ]);
    });
  }

  /**
   * A live challenge for `purpose` and the user it is bound to (null: anyone's), or
   * null when it is unknown, used or expired. Looks only: it is consumed with the change.
   */
  async liveChallenge(challenge: string, purpose: ChallengePurpose, now: Date): Promise<{ userId: string | null; named?: true } | null> {
    const { rows } = await this.#db.query<{ user_id: string | null; named: boolean }>(
      'SELECT user_id, named FROM webauthn_challenges WHERE challenge = $1 AND purpose = $2 AND expires_at > $3',
      [challenge, purpose, now],
    );
    const row = rows[0];
    return row ? { userId: row.user_id, ...(row.named ? { named: true as const } : {}) } : null;
  }

  /**
   * Adds a verified credential, consuming its registration challenge (bound to this
   * user) in the same transaction; audits `passkey.added`. Without a name, the first
   * free `Passkey N`. Refused, and nothing changes, when the challenge is no longer
   * there, the credential is registered already, or the user has `max` passkeys.
   */
  async add(input: {
    userId: string;
    username: string;
    passkey: NewPasskey;
    name: string | undefined;
    challenge: string;
    max: number;
    now: Date;
    audit: Omit<AuditEntry, 'event' | 'outcome'>;
  }): Promise<PasskeyRecord | PasskeyRefusal> {
    try {
      return await this.#writer.write(input.now, async (tx, log) => {
        const taken = await tx.query(
          `DELETE FROM webauthn_challenges WHERE challenge = $1 AND purpose = 'registration' AND user_id = $2 AND expires_at > $3 RETURNING challenge`,
          [input.challenge, input.userId, input.now],
        );
        if (taken.rows.length === 0) throw new Refused('challenge');
        // The user's row lock: two registrations at once count (and name) one after the other.
        const user = await tx.query('SELECT 1 FROM users WHERE id = $1 AND disabled_at IS NULL FOR UPDATE', [input.userId]);
        if (user.rows.length === 0) throw new Refused('gone');
        const existing = await tx.query<{ name: string }>('SELECT name FROM passkeys WHERE user_id = $1', [input.userId]);
        if (existing.rows.length >= input.max) throw new Refused('too_many');
        const known = await tx.query('SELECT 1 FROM passkeys WHERE credential_id = $1', [input.passkey.credentialId]);
        if (known.rows.length > 0) throw new Refused('duplicate');
        const names = new Set(existing.rows.map((r) => r.name));
        let n = existing.rows.length + 1;
        while (names.has(`Passkey ${n}`)) n += 1;
        const p = input.passkey;
        const { rows } = await tx.query<PasskeyRow>(
          `INSERT INTO passkeys (id, user_id, credential_id, public_key, counter, transports, device_type, backed_up, name, created_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING *`,
          [p.id, input.userId, p.credentialId, p.publicKey, p.counter, p.transports, p.deviceType, p.backedUp, input.name ?? `Passkey ${n}`, input.now],
        );
        const added = toPasskey(rows[0]!);
        await log({ ...input.audit, event: 'passkey.added', outcome: 'success', userId: input.userId, username: input.username, reason: `passkey ${added.id}` });
        return added;
      });
    } catch (error) {
      if (error instanceof Refused) return error.reason;
      // Two registrations of one credential at once: the unique index decides.
      if (isUniqueViolation(error)) return 'duplicate';
      throw error;
    }
  }

  /**
   * A login with `passkeyId`: with its row locked, the authentication challenge is
   * consumed, `accept` decides on the stored state (the signature counter check: SQL
   * fetches and writes, the flow decides), and the counter, backup state and last use
   * are written. Refused, and nothing changes, when the passkey is gone, the challenge
   * no longer live, or `accept` says no (`counter`).
   */
  async use(input: {
    passkeyId: string;
    challenge: string;
    counter: number;
    backedUp: boolean;
    now: Date;
    accept: (stored: PasskeyRecord) => boolean;
  }): Promise<PasskeyRecord | PasskeyRefusal> {
    try {
      return await this.#writer.write(input.now, async (tx) => {
        const locked = await tx.query<PasskeyRow>('SELECT * FROM passkeys WHERE id = $1 FOR UPDATE', [input.passkeyId]);
        if (!locked.rows[0]) throw new Refused('gone');
        // The challenge first: of two requests with one assertion, the loser is a replay, not a clone.
        const taken = await tx.query(
          `DELETE FROM webauthn_challenges WHERE challenge = $1 AND purpose = 'authentication' AND expires_at > $2 RETURNING challenge`,
          [input.challenge, input.now],
        );
        if (taken.rows.length === 0) throw new Refused('challenge');
        if (!input.accept(toPasskey(locked.rows[0]))) throw new Refused('counter');
        const { rows } = await tx.query<PasskeyRow>(
          'UPDATE passkeys SET counter = $2, backed_up = $3, last_used_at = $4 WHERE id = $1 RETURNING *',
          [input.passkeyId, input.counter, input.backedUp, input.now],
        );
        return toPasskey(rows[0]!);
      });
    } catch (error) {
      if (error instanceof Refused) return error.reason;
      throw error;
    }
  }

  /** Renames one of the user's passkeys; null when the user has no such passkey. */
  async rename(input: { userId: string; id: string; name: string }): Promise<PasskeyRecord | null> {
    const { rows } = await this.#db.query<PasskeyRow>('UPDATE passkeys SET name = $3 WHERE id = $1 AND user_id = $2 RETURNING *', [
      input.id,
      input.userId,
      input.name,
    ]);
    return rows[0] ? toPasskey(rows[0]) : null;
  }

  /** Removes one of the user's passkeys, audited as `passkey.removed`; null when the user has no such passkey. */
  async remove(input: { userId: string; username: string; id: string; now: Date; audit: Omit<AuditEntry, 'event' | 'outcome'> }): Promise<PasskeyRecord | null> {
    return this.#writer.write(input.now, async (tx, log) => {
      const { rows } = await tx.query<PasskeyRow>('DELETE FROM passkeys WHERE id = $1 AND user_id = $2 RETURNING *', [input.id, input.userId]);
      if (!rows[0]) return null;
      const removed = toPasskey(rows[0]);
      await log({ ...input.audit, event: 'passkey.removed', outcome: 'success', userId: input.userId, username: input.username, reason: `passkey ${removed.id}` });
      return removed;
    });
  }

  /** Deletes challenges that expired before `before`; returns how many. */
  async prune(before: Date): Promise<number> {
    const { rowCount } = await this.#db.query('DELETE FROM webauthn_challenges WHERE expires_at < $1', [before]);
    return rowCount;
  }
}

function toPasskey(r: PasskeyRow): PasskeyRecord {
  return {
    id: r.id,
    userId: r.user_id,
    credentialId: r.credential_id,
    publicKey: r.public_key,
    counter: Number(r.counter),
    transports: r.transports ?? [],
    deviceType: r.device_type,
    backedUp: r.backed_up,
    name: r.name,
    createdAt: new Date(r.created_at),
    lastUsedAt: r.last_used_at === null ? null : new Date(r.last_used_at),
  };
}
