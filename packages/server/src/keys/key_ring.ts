import { readFile } from 'node:fs/promises';
import type { SigningAlgorithm } from '@tessera/protocol';
import {
  type CryptoKey,
  calculateJwkThumbprint,
  exportJWK,
  generateKeyPair,
  importJWK,
  importPKCS8,
  type JWK,
  type JWTHeaderParameters,
} from 'jose';
import type { Store } from '../store/store.js';

/** A key imported once at start: never a PEM or JWK re-parsed on the hot path. */
interface LoadedKey {
  kid: string;
  alg: SigningAlgorithm;
  key: CryptoKey;
}

/** A public key as the JWKS publishes it. */
export type PublicJwk = JWK & { kid: string; alg: string; use: 'sig' };

/**
 * The keys the server signs with and publishes. The newest live key of the
 * configured algorithm signs; every live key verifies and is in the JWKS, so
 * tokens signed before an algorithm change keep working until they expire.
 */
export class KeyRing {
  readonly signer: LoadedKey;
  readonly #verifiers: ReadonlyMap<string, LoadedKey>;
  readonly #jwks: { keys: PublicJwk[] };

  private constructor(signer: LoadedKey, verifiers: Map<string, LoadedKey>, jwks: PublicJwk[]) {
    this.signer = signer;
    this.#verifiers = verifiers;
    this.#jwks = Object.freeze({ keys: jwks });
  }

  /**
   * Loads the ring from the store, generating the first key of `alg` when there
   * is none, or signs with the PEM file `privateKeyFile` when given.
   */
  static async load(
    store: Store,
    options: { alg: SigningAlgorithm; privateKeyFile?: string | undefined; now: Date },
  ): Promise<KeyRing> {
    let external: { loaded: LoadedKey; jwk: PublicJwk } | undefined;
    if (options.privateKeyFile) {
      external = await loadPemKey(options.privateKeyFile, options.alg);
    } else {
      await store.ensureSigningKey(options.alg, options.now, () => generateSigningKey(options.alg));
    }
    const records = (await store.listSigningKeys()).filter((k) => k.retiredAt === null);
    const verifiers = new Map<string, LoadedKey>();
    const jwks: PublicJwk[] = [];
    let signer: LoadedKey | undefined = external?.loaded;
    for (const record of records) {
      const alg = record.alg as SigningAlgorithm;
      const loaded: LoadedKey = { kid: record.kid, alg, key: (await importJWK(record.privateJwk, alg)) as CryptoKey };
      verifiers.set(record.kid, { ...loaded, key: (await importJWK(record.publicJwk, alg)) as CryptoKey });
      jwks.push(publicJwk(record.publicJwk, record.kid, alg));
      // Records come oldest first, so the last live key of the algorithm signs.
      if (!external && alg === options.alg) signer = loaded;
    }
    if (external && !verifiers.has(external.loaded.kid)) {
      verifiers.set(external.loaded.kid, { ...external.loaded, key: (await importJWK(external.jwk, external.loaded.alg)) as CryptoKey });
      jwks.push(external.jwk);
    }
    if (!signer) throw new Error(`no live ${options.alg} signing key in the key ring`);
    return new KeyRing(signer, verifiers, jwks);
  }

  /** `{keys: [...]}`: public parts only, each with `kid`, `alg` and `use`. */
  jwks(): { keys: PublicJwk[] } {
    return this.#jwks;
  }

  /** Algorithms a token may be signed with: those of the live keys, nothing else. */
  algorithms(): SigningAlgorithm[] {
    return [...new Set([...this.#verifiers.values()].map((k) => k.alg))];
  }

  /**
   * The key for a token's header: found by `kid` in our own ring only (a `jku`,
   * `x5u`, `jwk` or `x5c` header is never looked at), and only for the
   * algorithm that key was made for.
   */
  verificationKey(header: JWTHeaderParameters): CryptoKey {
    const key = header.kid === undefined ? undefined : this.#verifiers.get(header.kid);
    if (!key || key.alg !== header.alg) throw new Error('unknown key');
    return key.key;
  }
}

/** Makes a new key pair; its `kid` is the RFC 7638 thumbprint of the public key. */
export async function generateSigningKey(alg: SigningAlgorithm) {
  const { publicKey, privateKey } = await generateKeyPair(alg, { extractable: true });
  const publicJwkValue = await exportJWK(publicKey);
  const kid = await calculateJwkThumbprint(publicJwkValue);
  return {
    kid,
    alg,
    publicJwk: publicJwkValue as Record<string, unknown>,
    privateJwk: (await exportJWK(privateKey)) as Record<string, unknown>,
  };
}

async function loadPemKey(file: string, alg: SigningAlgorithm): Promise<{ loaded: LoadedKey; jwk: PublicJwk }> {
  const pem = await readFile(file, 'utf8');
  let key: CryptoKey;
  try {
    key = (await importPKCS8(pem, alg, { extractable: true })) as CryptoKey;
  } catch (error) {
    throw new TypeError(`privateKeyFile: ${file} is not a PKCS#8 PEM private key for ${alg}`, { cause: error });
  }
  const full = await exportJWK(key);
  // The public members of a private JWK are the public key.
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...pub } = full;
  const kid = await calculateJwkThumbprint(pub);
  return { loaded: { kid, alg, key }, jwk: publicJwk(pub, kid, alg) };
}

function publicJwk(jwk: JWK | Record<string, unknown>, kid: string, alg: string): PublicJwk {
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ext: _ext, key_ops: _ops, ...pub } = jwk as JWK;
  return { ...pub, kid, alg, use: 'sig' };
}
