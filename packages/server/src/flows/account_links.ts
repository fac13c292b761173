import { createHash, randomBytes } from 'node:crypto';
import type { AccountTokenPurpose, NewAccountToken } from '../store/records.js';

/** How long a password-reset link works. */
export const RESET_TTL_SECONDS = 30 * 60;
/** How long an email-verification link works. */
export const VERIFICATION_TTL_SECONDS = 24 * 60 * 60;

/** The token of a mailed link: 256 random bits. Only its hash is stored. */
export function newAccountToken(purpose: AccountTokenPurpose, now: number, email?: string): { token: string; stored: NewAccountToken } {
  const token = randomBytes(32).toString('base64url');
  const ttl = purpose === 'password_reset' ? RESET_TTL_SECONDS : VERIFICATION_TTL_SECONDS;
  return { token, stored: { tokenHash: accountTokenHash(token), purpose, expiresAt: new Date(now + ttl * 1000), ...(email ? { email } : {}) } };
}

/**
 * Tokens are looked up by hash: SHA-256 of a 256-bit random value. A timing
 * difference in the index lookup reveals bits of the hash, never of a token.
 */
export function accountTokenHash(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('base64url');
}

/** A token as clients send it back: the shape we hand out, or nothing worth a lookup. */
export function isAccountTokenShape(token: string): boolean {
  return /^[A-Za-z0-9_-]{43}$/.test(token);
}

/**
 * The link in the mail. The token rides in the fragment, which browsers never send
 * to a server: it stays out of access logs, proxies and Referer headers.
 */
export function accountLink(publicUrl: string, purpose: AccountTokenPurpose, token: string): string {
  const base = publicUrl.replace(/\/+$/, '');
  return `${base}/#${purpose === 'password_reset' ? 'reset-password' : 'verify-email'}=${token}`;
}
