import { TesseraError } from '@tessera/protocol';
import { remove as withoutConfusables } from 'confusables';

/** Letters, digits and `._@+-`, 3 to 64 characters: fits an email address, not markup. Also the OpenAPI schema's pattern. */
export const USERNAME_PATTERN = '^[\\p{L}\\p{N}._@+\\-]{3,64}$';
export const USERNAME_MESSAGE = 'The username must be 3 to 64 letters, digits or . _ @ + - characters.';
const USERNAME = new RegExp(USERNAME_PATTERN, 'u');

/**
 * The scripts a username's letters may come from together. Mixing any other two
 * (Latin with Cyrillic, Greek with Latin…) is how look-alikes are made (`аlice`
 * with a Cyrillic а), so it is refused, as UTS #39's "highly restrictive" profile does.
 */
const SCRIPTS = [
  'Latin', 'Cyrillic', 'Greek', 'Armenian', 'Georgian', 'Hebrew', 'Arabic', 'Syriac', 'Thaana', 'Han', 'Hiragana', 'Katakana', 'Hangul', 'Bopomofo',
  'Thai', 'Lao', 'Khmer', 'Myanmar', 'Tibetan', 'Mongolian', 'Devanagari', 'Bengali', 'Gurmukhi', 'Gujarati', 'Oriya', 'Tamil', 'Telugu', 'Kannada',
  'Malayalam', 'Sinhala', 'Ethiopic', 'Cherokee', 'Canadian_Aboriginal', 'Tifinagh', 'Lisu',
];
// Script_Extensions: the prolonged sound mark ー is Common, but belongs with Hiragana and Katakana.
const SCRIPT_PATTERNS = SCRIPTS.map((name) => [name, new RegExp(`\\p{Script_Extensions=${name}}`, 'u')] as const);
const ALLOWED_TOGETHER = [new Set(['Latin', 'Han', 'Hiragana', 'Katakana']), new Set(['Latin', 'Han', 'Hangul']), new Set(['Latin', 'Han', 'Bopomofo'])];

/** Normalises a username (NFKC) and checks its shape and its scripts. */
export function normalizeUsername(username: string): string {
  const normalized = username.normalize('NFKC');
  if (!USERNAME.test(normalized)) {
    throw new TesseraError('invalid_request', USERNAME_MESSAGE);
  }
  const scripts = scriptsOf(normalized);
  if (scripts.has('Other')) throw new TesseraError('invalid_request', 'The username uses letters of a script this server does not take.');
  if (scripts.size > 1 && !ALLOWED_TOGETHER.some((allowed) => [...scripts].every((s) => allowed.has(s)))) {
    throw new TesseraError('invalid_request', `The username mixes scripts (${[...scripts].join(', ')}): use the letters of one.`);
  }
  return normalized;
}

function scriptsOf(text: string): Set<string> {
  const scripts = new Set<string>();
  for (const char of text) {
    if (!/\p{L}|\p{Lm}|\u30FC/u.test(char)) continue;
    scripts.add(SCRIPT_PATTERNS.find(([, pattern]) => pattern.test(char))?.[0] ?? 'Other');
  }
  return scripts;
}

/**
 * What a username looks like, for telling look-alikes apart: confusable characters
 * mapped to the ones they imitate (`раураl` → `paypal`, `ℌello` → `Hello`, accents
 * and invisible marks dropped), then case-folded. Two users may not share one.
 */
export function usernameSkeleton(username: string): string {
  // ß is "ss" (the package would make it β, then b); dotless ı looks like i.
  const mapped = withoutConfusables(username.normalize('NFKC').replace(/ß/g, 'ss').replace(/ı/g, 'i')).normalize('NFKC');
  // What the package leaves alike in Latin (UTS #39 maps them too): I, l, 1 and |; O and 0; rn and m.
  return mapped.replace(/[I1|]/g, 'l').replace(/0/g, 'O').replace(/rn/g, 'm').toLowerCase();
}
