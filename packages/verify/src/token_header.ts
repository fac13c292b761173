import { TesseraError } from '@tessera/protocol';
import { base64url } from 'jose';

/** What a verifier acts on in a JWS protected header: which key, and which algorithm. */
export interface TokenHeader {
  kid: string;
  alg: string;
}

/** Invalid UTF-8 in a header is refused, not replaced with U+FFFD. */
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

const refuse = (why: string): never => {
  throw new TesseraError('invalid_token', undefined, { cause: new Error(why) });
};

/**
 * A reader of compact JWS headers that remembers each one by the exact text of its
 * segment: every token of one key and type shares it, so a handful of entries serve
 * all traffic. The cache is cleared when it reaches `capacity`, so forged headers
 * cannot grow it, and an entry can only be the decoding of its own key text.
 *
 * Refused with `invalid_token` (the reason as the error's `cause`, for the log): a
 * header that is not a JSON object in UTF-8, a `kid` or `alg` that is not a string,
 * and any `crit` (no JWS extension is understood, not even `b64`, which jose accepts
 * and fast-jwt does not). The signature is not checked here: the key chosen by `kid`
 * and `alg` checks it over the same segment.
 *
 * `@tessera/verify` reads access tokens with it; the auth server reads its own tokens
 * with it too.
 */
export function tokenHeaderReader(capacity = 64): (token: string) => TokenHeader {
  const headers = new Map<string, TokenHeader>();
  return (token) => {
    const dot = token.indexOf('.');
    if (dot <= 0) refuse('not a compact JWS');
    const segment = token.slice(0, dot);
    let header = headers.get(segment);
    if (header === undefined) {
      let decoded: unknown;
      try {
        decoded = JSON.parse(strictUtf8.decode(base64url.decode(segment)));
      } catch {
        refuse('the header is not JSON in UTF-8');
      }
      if (typeof decoded !== 'object' || decoded === null || Array.isArray(decoded)) return refuse('the header is not a JSON object');
      const { kid, alg, crit } = decoded as Record<string, unknown>;
      if (typeof kid !== 'string' || typeof alg !== 'string') return refuse('kid and alg must be strings');
      if (crit !== undefined) return refuse('crit is not supported');
      header = { kid, alg };
      if (headers.size >= capacity) headers.clear();
      headers.set(segment, header);
    }
    return header;
  };
}
