import { hash, verify } from '@node-rs/argon2';
import { TesseraError } from '@tessera/protocol';

/**
 * argon2id with OWASP's parameters (m=19456 KiB, t=2, p=1): about 8.5 ms a hash
 * on one core, run off the event loop by the async API.
 * `2` is Argon2id in `@node-rs/argon2`'s const enum, which isolated modules cannot import.
 */
const ARGON2ID = { algorithm: 2, memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export const PASSWORD_MIN_LENGTH = 8;
export const PASSWORD_MAX_LENGTH = 1024;

export function hashPassword(password: string): Promise<string> {
  return hash(password, ARGON2ID);
}

export async function verifyPassword(passwordHash: string, password: string): Promise<boolean> {
  try {
    return await verify(passwordHash, password);
  } catch {
    return false;
  }
}

/**
 * Length only, counted in characters (code points), as NIST 800-63B and ASVS 2.1
 * advise: no composition rules, long passphrases welcome.
 */
export function checkPasswordPolicy(password: string): void {
  const length = [...password].length;
  if (length < PASSWORD_MIN_LENGTH || length > PASSWORD_MAX_LENGTH) {
    throw new TesseraError(
      'weak_password',
      `The password must be ${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters long.`,
    );
  }
}

/**
 * A hash of a random password, verified against when the username is unknown,
 * so an unknown user costs the same argon2id work as a wrong password and the
 * two cannot be told apart by timing.
 */
export function createDummyHash(): Promise<string> {
  return hashPassword(crypto.randomUUID());
}
