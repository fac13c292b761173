import { TesseraError } from '@tessera/protocol';

/**
 * An email address as Tessera takes it: one `@`, at most 64 characters before it, a
 * dotted domain, no spaces, controls, invisible format characters (zero-width,
 * bidi overrides: two addresses that look alike must not be two accounts), lone
 * surrogates or characters that need quoting, no empty or doubled dots. The OpenAPI
 * schema states this very pattern.
 */
export const EMAIL_PATTERN = String.raw`^(?!\.)(?!.*\.\.)(?!.*\.@)(?!.*@\.)[^\s@"(),:;<>\[\\\]\p{Cc}\p{Cf}\p{Cs}]{1,64}@[^\s@"(),:;<>\[\\\]\p{Cc}\p{Cf}\p{Cs}]+\.[^\s@"(),:;<>\[\\\]\p{Cc}\p{Cf}\p{Cs}.]{2,}$`;

/** Longest address SMTP can carry, in octets (RFC 5321 §4.5.3.1.3, as RFC 3696 errata settle it). */
export const EMAIL_MAX_LENGTH = 254;

const EMAIL = new RegExp(EMAIL_PATTERN, 'u');

/** Checks an email address (NFC-normalised); case is kept as given, uniqueness ignores it. */
export function normalizeEmail(raw: string): string {
  const email = raw.normalize('NFC');
  if (Buffer.byteLength(email, 'utf8') > EMAIL_MAX_LENGTH || !EMAIL.test(email)) throw new TesseraError('invalid_request', 'That is not a valid email address.');
  return email;
}
