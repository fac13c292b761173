import { CompactEncrypt, compactDecrypt } from 'jose';

/**
 * Private keys at rest: with a key-encryption key (`TESSERA_KEY_ENCRYPTION_KEY`,
 * 32 random bytes in base64 or base64url) each private JWK is stored as a JWE
 * (`dir` + `A256GCM`), so a copy of the database alone does not give away the
 * signing keys. Without one, the data directory's mode (0700) protects them.
 */
export type StoredPrivateJwk = Record<string, unknown>;

/** Decodes and checks a key-encryption key. @throws TypeError naming the problem */
export function parseKeyEncryptionKey(text: string): Uint8Array {
  const bytes = Buffer.from(text.trim().replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  if (bytes.length !== 32) {
    throw new TypeError('keyEncryptionKey: expected 32 random bytes in base64 (openssl rand -base64 32)');
  }
  return new Uint8Array(bytes);
}

export async function sealPrivateJwk(jwk: Record<string, unknown>, kek: Uint8Array | undefined): Promise<StoredPrivateJwk> {
  return sealSecret(jwk, kek);
}

/**
 * Seals any secret record (a private JWK, a TOTP secret) with the key-encryption key
 * as a JWE; without one, returns it as it is (the data directory's mode protects it).
 */
export async function sealSecret(secret: Record<string, unknown>, kek: Uint8Array | undefined): Promise<StoredPrivateJwk> {
  if (!kek) return secret;
  const jwe = await new CompactEncrypt(new TextEncoder().encode(JSON.stringify(secret)))
    .setProtectedHeader({ alg: 'dir', enc: 'A256GCM', cty: 'json' })
    .encrypt(kek);
  return { sealed: jwe };
}

/** Whether a stored private key is sealed (a JWE) rather than a JWK in the clear. */
export function isSealed(stored: StoredPrivateJwk): stored is { sealed: string } {
  return typeof stored.sealed === 'string';
}

export function openPrivateJwk(stored: StoredPrivateJwk, kek: Uint8Array | undefined, kid: string): Promise<Record<string, unknown>> {
  return openSecret(stored, kek, `signing key ${kid}`);
}

/** Opens what `sealSecret` stored; `what` names it in errors ("signing key …"). */
export async function openSecret(stored: StoredPrivateJwk, kek: Uint8Array | undefined, what: string): Promise<Record<string, unknown>> {
  if (!isSealed(stored)) return stored;
  if (!kek) throw new Error(`${what} is encrypted: set TESSERA_KEY_ENCRYPTION_KEY`);
  try {
    const { plaintext } = await compactDecrypt(stored.sealed, kek, { keyManagementAlgorithms: ['dir'], contentEncryptionAlgorithms: ['A256GCM'] });
    return JSON.parse(new TextDecoder().decode(plaintext)) as Record<string, unknown>;
  } catch (error) {
    throw new Error(`${what} cannot be decrypted with this TESSERA_KEY_ENCRYPTION_KEY`, { cause: error });
  }
}
