import { TesseraError } from '@tessera/protocol';
import { base64url, calculateJwkThumbprint, decodeProtectedHeader, type JWK } from 'jose';
import { proofEngine } from '#key-verifier';
import { publicKeyMembers } from './public_key_members.js';

/** `typ` of a DPoP proof (RFC 9449 §4.2). */
export const DPOP_PROOF_TYPE = 'dpop+jwt';
/** The proof algorithms Tessera accepts: asymmetric, and what WebCrypto and Node sign fast. */
export const DPOP_ALGORITHMS = ['ES256', 'EdDSA'] as const;
/** How far a proof's `iat` may be from now, in seconds (the contract's 60 s). */
export const DPOP_MAX_AGE_SECONDS = 60;

/** Private members a public JWK must not carry (RFC 7517/7518). */
const PRIVATE_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/**
 * Remembers proof `jti`s long enough that a replay inside the `iat` window is seen.
 * Shared through Redis by a cluster of auth servers; per process otherwise (a proof
 * replayed to another instance within the window is then not recognised: say so).
 */
export interface DpopReplayCache {
  /** Records `key` for `ttlMs` from `now` (ms); false when it was already there (a replay). */
  remember(key: string, ttlMs: number, now: number): Promise<boolean>;
}

/**
 * An in-process replay cache, bounded: expired keys at the front (the oldest) are
 * dropped as new ones arrive, so its memory follows the traffic of the last `ttlMs`;
 * at `maxEntries` live keys it refuses new ones (fail closed: forgetting a live key
 * would let its proof be replayed). Each call is O(1) amortised, full or not.
 */
export function memoryReplayCache(maxEntries = 1_000_000): DpopReplayCache & { readonly size: number } {
  // Insertion order: with one ttl for every key (as verifyDpopProof uses), also expiry order.
  const seen = new Map<string, number>();
  return {
    /** Keys held now (expired ones included until swept). */
    get size() {
      return seen.size;
    },
    async remember(key, ttlMs, now) {
      const until = seen.get(key);
      if (until !== undefined && until > now) return false;
      for (const [k, t] of seen) {
        if (t > now) break;
        seen.delete(k);
      }
      // The sweep above already dropped every expired key (one ttl: insertion order is expiry order).
      if (seen.size >= maxEntries) return false;
      seen.delete(key); // so that it moves to the back, in expiry order
      seen.set(key, now + ttlMs);
      return true;
    },
  };
}

export interface DpopProofCheck {
  /** The `DPoP` header value (undefined when absent). */
  proof: string | undefined;
  /** The request's method. */
  method: string;
  /** The request's absolute URL as this server is reached (query and fragment are ignored). */
  url: string;
  /** With an access token (`Authorization: DPoP …`): the proof's `ath` must be its hash. */
  accessToken?: string;
  /** The key the token or session is bound to (RFC 7638 thumbprint): the proof must be signed by it. */
  expectedJkt?: string;
  /** The server nonce the proof must carry, or the ones it may carry (RFC 9449 §8). */
  nonce?: string | readonly string[];
  /** Milliseconds since the epoch. */
  now: number;
  replay: DpopReplayCache;
}

/**
 * Checks a DPoP proof (RFC 9449 §4.3) and returns its key's thumbprint. Every failure
 * is a `TesseraError` `invalid_dpop_proof` whose message says which check failed
 * (safe to show: it never echoes the proof).
 */
export async function verifyDpopProof(check: DpopProofCheck): Promise<{ jkt: string }> {
  const refuse = (why: string): never => {
    throw new TesseraError('invalid_dpop_proof', `DPoP proof refused: ${why}.`);
  };
  const proof = check.proof;
  if (!proof) return refuse('no DPoP header');
  if (proof.length > 8192 || !/^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/.test(proof)) return refuse('not a compact JWS');
  let header: ReturnType<typeof decodeProtectedHeader>;
  try {
    header = decodeProtectedHeader(proof);
  } catch {
    return refuse('unreadable header');
  }
  if (header.typ !== DPOP_PROOF_TYPE) return refuse('typ must be dpop+jwt');
  if (!(DPOP_ALGORITHMS as readonly string[]).includes(String(header.alg))) return refuse('alg must be ES256 or EdDSA');
  const jwk = header.jwk as JWK | undefined;
  if (!jwk || typeof jwk !== 'object' || Array.isArray(jwk)) return refuse('no public jwk in the header');
  if (PRIVATE_MEMBERS.some((m) => m in jwk)) return refuse('the jwk carries private key material');
  // Only the key itself: `use`, `key_ops` or `alg` in it would be read by one engine
  // (WebCrypto refuses key_ops ["sign"]) and not by the other, so both see the same key.
  const publicKey = publicKeyMembers(jwk);
  if (header.crit !== undefined) return refuse('crit is not supported');
  let payload: Record<string, unknown>;
  let key: ProofKey;
  try {
    key = await proofKey(proof.slice(0, proof.indexOf('.')), publicKey, String(header.alg));
    payload = await key.verifier.verify(proof);
  } catch {
    return refuse('bad signature');
  }
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) return refuse('the payload is not a JSON object');
  const nowS = check.now / 1000;
  const { exp, nbf } = payload;
  if (exp !== undefined && (typeof exp !== 'number' || exp <= nowS - DPOP_MAX_AGE_SECONDS)) return refuse('exp has passed');
  if (nbf !== undefined && (typeof nbf !== 'number' || nbf > nowS + DPOP_MAX_AGE_SECONDS)) return refuse('nbf is in the future');
  const { jti, htm, htu, iat, ath, nonce } = payload;
  if (typeof jti !== 'string' || jti.length < 8 || jti.length > 256) return refuse('jti missing or out of bounds');
  if (htm !== check.method) return refuse('htm does not match the request method');
  if (typeof htu !== 'string' || !sameTarget(htu, check.url)) return refuse('htu does not match the request URL');
  if (typeof iat !== 'number' || !Number.isFinite(iat) || Math.abs(check.now / 1000 - iat) > DPOP_MAX_AGE_SECONDS) return refuse('iat is not within 60 s of now');
  if (check.accessToken !== undefined && ath !== (await proofEngine.sha256(check.accessToken))) return refuse('ath is not the access token’s hash');
  if (check.nonce !== undefined && !(typeof nonce === 'string' && (typeof check.nonce === 'string' ? [check.nonce] : check.nonce).includes(nonce))) {
    throw new TesseraError('invalid_dpop_proof', 'DPoP proof refused: a fresh server nonce is required (DPoP-Nonce).', { details: { dpop_error: 'use_dpop_nonce' } });
  }
  const jkt = key.jkt;
  if (check.expectedJkt !== undefined && jkt !== check.expectedJkt) return refuse('signed by another key than the one the token is bound to');
  // Last, so a proof refused for another reason does not use up its jti.
  // A fixed-size key (128 bits of a hash), whatever length of jti the client chose: the cache's memory is bounded by its entry count.
  const replayKey = (await proofEngine.sha256(`${jkt}:${jti}`)).slice(0, 22);
  if (!(await check.replay.remember(replayKey, 2 * DPOP_MAX_AGE_SECONDS * 1000, check.now))) return refuse('jti already used (a replay)');
  return { jkt };
}

interface ProofKey {
  verifier: Awaited<ReturnType<typeof proofEngine.prepare>>;
  /** Its RFC 7638 thumbprint. */
  jkt: string;
}

/** Keys of recent proofs, by their protected header, least recently used first: a client signs every proof with one key. */
const proofKeys = new Map<string, Promise<ProofKey>>();
/** About 7 KB of RSS an entry (a key and its fast-jwt verifier): at most about 14 MB. */
const PROOF_KEYS_MAX = 2_000;

/**
 * The public key in a proof's header, imported, with its thumbprint: done once per
 * header (a client's proofs all carry the same one), which saves a key import and a
 * digest on every request after the first. Only a key that imported is remembered.
 */
function proofKey(headerSegment: string, jwk: JWK, alg: string): Promise<ProofKey> {
  const known = proofKeys.get(headerSegment);
  if (known) {
    // Most recently used last, so a flood of one-off headers evicts itself before the clients in use.
    proofKeys.delete(headerSegment);
    proofKeys.set(headerSegment, known);
    return known;
  }
  const made = importProofKey(jwk, alg);
  // An ES256 or Ed25519 header is about 200 characters; longer ones (RSA keys) are not kept.
  if (headerSegment.length > PROOF_HEADER_KEPT_MAX) return made;
  made.catch(() => proofKeys.delete(headerSegment));
  if (proofKeys.size >= PROOF_KEYS_MAX) proofKeys.delete(proofKeys.keys().next().value!);
  proofKeys.set(headerSegment, made);
  return made;
}
const PROOF_HEADER_KEPT_MAX = 400;

function importProofKey(jwk: JWK, alg: string): Promise<ProofKey> {
  return (async () => {
    const verifier = await proofEngine.prepare(jwk, alg);
    return { verifier, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
  })();
}

/** `ath`: base64url(SHA-256(access token)) (RFC 9449 §4.2). WebCrypto, so it runs on edge runtimes too. */
export async function accessTokenHash(token: string): Promise<string> {
  return base64url.encode(new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token))));
}

/**
 * `htu` against the request (RFC 9449 §4.3, RFC 3986 §6.2.2-6.2.3): scheme and host
 * case, default ports, dot segments and percent-encoding case are normalised by URL;
 * query and fragment are not part of the comparison.
 */
function sameTarget(htu: string, url: string): boolean {
  try {
    const a = new URL(htu);
    const b = new URL(url);
    return a.protocol === b.protocol && a.host === b.host && decodeURIComponentSafe(a.pathname) === decodeURIComponentSafe(b.pathname);
  } catch {
    return false;
  }
}

function decodeURIComponentSafe(path: string): string {
  return path.replace(/%[0-9a-f]{2}/gi, (m) => m.toUpperCase());
}
