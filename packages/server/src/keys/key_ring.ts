import { readFile } from 'node:fs/promises';
import type { SigningAlgorithm } from '@tessera/protocol';
import { publicKeyMembers } from '@tessera/verify';
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  importPKCS8,
  type JWK,
} from 'jose';
import type { SigningKeyRecord } from '../store/records.js';
import type { Store } from '../store/store.js';
import { isSealed, openPrivateJwk, sealPrivateJwk } from './key_encryption.js';

/** A key imported once: never a PEM or JWK re-parsed on the hot path. */
export interface LoadedKey {
  kid: string;
  alg: SigningAlgorithm;
  key: CryptoKey;
}

/** A public key as the JWKS publishes it. */
export type PublicJwk = JWK & { kid: string; alg: string; use: 'sig' };

export interface KeyRingOptions {
  alg: SigningAlgorithm;
  privateKeyFile?: string | undefined;
  /** Decrypts private keys at rest (see key_encryption.ts). */
  keyEncryptionKey?: Uint8Array | undefined;
  /** Refresh token lifetime in seconds: how long a key stays published after it stopped signing. */
  refreshTtl: number;
  now: () => number;
}

interface Snapshot {
  published: { kid: string; alg: string; createdAt: number }[];
  signer: LoadedKey;
  verifiers: ReadonlyMap<string, LoadedKey>;
  jwks: { keys: PublicJwk[] };
  algorithms: SigningAlgorithm[];
}

/** Slack on top of the refresh lifetime before an old key leaves the JWKS (clock skew). */
const RETENTION_SLACK_MS = 60_000;

/**
 * The keys the server signs with and publishes. A key is published from the
 * moment it is created, signs from its `activatesAt` (after verifiers' JWKS
 * caches have expired, so none sees an unknown `kid`), and stays published until
 * every token it signed has expired: the refresh lifetime after a newer key took
 * over. `reload()` re-reads the store, so rotations by the CLI or another
 * instance take effect without a restart.
 */
export class KeyRing {
  readonly #store: Store;
  readonly #options: KeyRingOptions;
  #external: { loaded: LoadedKey; jwk: PublicJwk } | undefined;
  #snapshot!: Snapshot;

  private constructor(store: Store, options: KeyRingOptions) {
    this.#store = store;
    this.#options = options;
  }

  /**
   * Loads the ring from the store, generating the first key of `alg` when there
   * is none, or signs with the PEM file `privateKeyFile` when given.
   */
  static async load(store: Store, options: KeyRingOptions): Promise<KeyRing> {
    const ring = new KeyRing(store, options);
    // Keys in the store are sealed even when a PEM file signs: they are still at rest there.
    await sealKeysAtRest(store, options);
    if (options.privateKeyFile) {
      ring.#external = await loadPemKey(options.privateKeyFile, options.alg);
    } else {
      await store.keys.ensure(options.alg, new Date(options.now()), () => generateSigningKey(options.alg, options.keyEncryptionKey));
    }
    await ring.reload();
    return ring;
  }

  /** Re-reads the keys from the store and swaps them in at once. */
  async reload(): Promise<void> {
    const now = this.#options.now();
    const records = (await this.#store.keys.list()).filter((k) => k.retiredAt === null);
    const previous = this.#snapshot?.verifiers;
    const verifiers = new Map<string, LoadedKey>();
    const jwks: PublicJwk[] = [];
    const published: Snapshot['published'] = [];
    let signerRecord: SigningKeyRecord | undefined;
    for (const [i, record] of records.entries()) {
      if (!isPublished(records, i, now, this.#options.refreshTtl)) continue;
      const alg = record.alg as SigningAlgorithm;
      const known = previous?.get(record.kid);
      verifiers.set(record.kid, known ?? { kid: record.kid, alg, key: (await importJWK(record.publicJwk, alg)) as CryptoKey });
      jwks.push(publicJwk(record.publicJwk, record.kid, alg));
      published.push({ kid: record.kid, alg, createdAt: record.createdAt.getTime() });
      // Oldest first: the last key of the algorithm that is active signs.
      if (alg === this.#options.alg && record.activatesAt.getTime() <= now) signerRecord = record;
    }
    // Only the signer's private key is imported, and only when the signer changed:
    // this runs on every periodic reload.
    let signer: LoadedKey | undefined = this.#external?.loaded;
    if (!signer && signerRecord) {
      signer =
        this.#snapshot?.signer.kid === signerRecord.kid
          ? this.#snapshot.signer
          : { kid: signerRecord.kid, alg: signerRecord.alg as SigningAlgorithm, key: await importPrivate(signerRecord, this.#options.keyEncryptionKey) };
    }
    const external = this.#external;
    if (external && !verifiers.has(external.loaded.kid)) {
      verifiers.set(external.loaded.kid, { ...external.loaded, key: (await importJWK(external.jwk, external.loaded.alg)) as CryptoKey });
      jwks.push(external.jwk);
    }
    if (!signer) throw new Error(`no active ${this.#options.alg} signing key in the key ring`);
    this.#snapshot = {
      published,
      signer,
      verifiers,
      jwks: Object.freeze({ keys: jwks }) as { keys: PublicJwk[] },
      algorithms: [...new Set([...verifiers.values()].map((k) => k.alg))],
    };
  }

  /** The key new tokens are signed with. */
  get signer(): LoadedKey {
    return this.#snapshot.signer;
  }

  /** The published keys with their age in seconds (metrics). */
  describe(): { kid: string; alg: string; ageSeconds: number; signing: boolean }[] {
    const now = this.#options.now();
    return this.#snapshot.published.map((k) => ({ kid: k.kid, alg: k.alg, ageSeconds: (now - k.createdAt) / 1000, signing: k.kid === this.signer.kid }));
  }

  /** `{keys: [...]}`: public parts only, each with `kid`, `alg` and `use`. */
  jwks(): { keys: PublicJwk[] } {
    return this.#snapshot.jwks;
  }

  /** Algorithms a token may be signed with: those of the published keys, nothing else. */
  algorithms(): SigningAlgorithm[] {
    return this.#snapshot.algorithms;
  }

  /**
   * The key for a token's header: found by `kid` in our own ring only (a `jku`,
   * `x5u`, `jwk` or `x5c` header is never looked at), and only for the
   * algorithm that key was made for.
   */
  verificationKey(header: { kid?: unknown; alg?: unknown }): LoadedKey | undefined {
    const key = typeof header.kid === 'string' ? this.#snapshot.verifiers.get(header.kid) : undefined;
    return key && key.alg === header.alg ? key : undefined;
  }
}

/**
 * With a key-encryption key, every private key is sealed: one written in the clear
 * (by a command run without the key, or before the key was configured) is sealed
 * now, and on the embedded database the old row versions and WAL segments that
 * held it are purged. Every sealed key must open with this key: a wrong one stops
 * the start, it never falls back. Without a key-encryption key, sealed keys stop
 * the start too, with what to set.
 */
async function sealKeysAtRest(store: Store, options: KeyRingOptions): Promise<void> {
  const kek = options.keyEncryptionKey;
  const keys = await store.keys.list();
  const sealed = keys.filter((k) => isSealed(k.privateJwk));
  if (!kek) {
    if (sealed.length) throw new Error(`the signing keys are sealed (${sealed.map((k) => k.kid).join(', ')}): set TESSERA_KEY_ENCRYPTION_KEY (or --key-encryption-key) to the key they were sealed with`);
    return;
  }
  for (const key of sealed) await openPrivateJwk(key.privateJwk, kek, key.kid);
  const now = await store.keys.sealAll(new Date(options.now()), (jwk) => sealPrivateJwk(jwk, kek));
  if (now.length && store.db.kind === 'pglite') await store.keys.purgeOldVersions();
}

/**
 * Whether record `i` (records oldest-activation first) is still published: it is
 * unless a newer key became active so long ago that every token it signed, refresh
 * tokens included, has expired.
 */
function isPublished(records: SigningKeyRecord[], i: number, now: number, refreshTtl: number): boolean {
  const record = records[i]!;
  const takeover = records.slice(i + 1).find((r) => r.alg === record.alg && r.activatesAt.getTime() <= now);
  if (!takeover) return true;
  return takeover.activatesAt.getTime() + refreshTtl * 1000 + RETENTION_SLACK_MS > now;
}

/** Makes a new key pair; its `kid` is the RFC 7638 thumbprint of the public key. */
export async function generateSigningKey(alg: SigningAlgorithm, keyEncryptionKey?: Uint8Array) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwkValue = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwkValue);
  return {
    kid,
    alg,
    publicJwk: publicJwkValue as Record<string, unknown>,
    privateJwk: await sealPrivateJwk((await exportJWK(privateKey)) as Record<string, unknown>, keyEncryptionKey),
  };
}

async function importPrivate(record: SigningKeyRecord, kek: Uint8Array | undefined): Promise<CryptoKey> {
  const jwk = await openPrivateJwk(record.privateJwk, kek, record.kid);
  return (await importJWK(jwk, record.alg)) as CryptoKey;
}

async function loadPemKey(file: string, alg: SigningAlgorithm): Promise<{ loaded: LoadedKey; jwk: PublicJwk }> {
  const pem = await readFile(file, 'utf8');
  let key: CryptoKey;
  try {
    key = (await importPKCS8(pem, alg, { extractable: true })) as CryptoKey;
  } catch (error) {
    throw new TypeError(`privateKeyFile: ${file} is not a PKCS#8 PEM private key for ${alg}`, { cause: error });
  }
  const kid = await calculateJwkThumbprint(publicKeyMembers(await exportJWK(key)));
  return { loaded: { kid, alg, key }, jwk: publicJwk(await exportJWK(key), kid, alg) };
}

function publicJwk(jwk: JWK | Record<string, unknown>, kid: string, alg: string): PublicJwk {
  return { ...publicKeyMembers(jwk as JWK), kid, alg, use: 'sig' };
}
