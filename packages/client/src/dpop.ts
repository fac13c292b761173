/**
 * DPoP (RFC 9449) for the client: a key pair the client holds and never exports, and
 * the proofs it signs. A session bound to the key's thumbprint refreshes only with
 * a proof by that key, so its refresh token alone is worthless to whoever copies it.
 */

/** Where the key pair comes from: WebCrypto keys, the private one non-extractable. */
export type DpopKeySource = () => Promise<CryptoKeyPair>;

export interface DpopProofInput {
  /** The request's method and absolute URL (query and fragment are dropped: RFC 9449 §4.2 `htu`). */
  method: string;
  url: string;
  /** The access token sent with it: the proof then carries its hash (`ath`). */
  accessToken?: string;
  /** The server's latest `DPoP-Nonce` for that origin. */
  nonce?: string;
  /** Milliseconds since the epoch, by the server's clock as far as the client knows it. */
  now: number;
}

export interface DpopSigner {
  /** The key's RFC 7638 thumbprint: what a bound token's `cnf.jkt` says. */
  thumbprint(): Promise<string>;
  /** A fresh proof (`typ: dpop+jwt`, ES256, the public `jwk` in the header). */
  proof(input: DpopProofInput): Promise<string>;
}

type Jose = typeof import('jose');
let jose: Promise<Jose> | undefined;

/** `jose`, imported on first use: an app without DPoP never downloads it (bundlers split it out). */
function loadJose(): Promise<Jose> {
  jose ??= import('jose').catch((error: unknown) => {
    jose = undefined;
    throw error;
  });
  return jose;
}

/** Signs proofs with the key pair `source` gives (loaded once). */
export function dpopSigner(source: DpopKeySource): DpopSigner {
  let loaded: Promise<{ privateKey: CryptoKey; jwk: { kty: string; crv: string; x: string; y: string }; jkt: string }> | undefined;
  const load = () => {
    loaded ??= (async () => {
      const { exportJWK, calculateJwkThumbprint } = await loadJose();
      const pair = await source();
      const { kty, crv, x, y } = await exportJWK(pair.publicKey);
      // Only the public members: a proof's header must never carry private ones.
      const jwk = { kty: String(kty), crv: String(crv), x: String(x), y: String(y) };
      return { privateKey: pair.privateKey, jwk, jkt: await calculateJwkThumbprint(jwk, 'sha256') };
    })().catch((error: unknown) => {
      loaded = undefined;
      throw error;
    });
    return loaded;
  };
  return {
    async thumbprint() {
      return (await load()).jkt;
    },
    async proof(input) {
      const [{ SignJWT }, key] = await Promise.all([loadJose(), load()]);
      const target = new URL(input.url);
      const claims: Record<string, string> = { htm: input.method.toUpperCase(), htu: `${target.origin}${target.pathname}` };
      if (input.accessToken !== undefined) claims.ath = await accessTokenHash(input.accessToken);
      if (input.nonce !== undefined) claims.nonce = input.nonce;
      return new SignJWT(claims)
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk: key.jwk })
        .setJti(crypto.randomUUID())
        .setIssuedAt(Math.floor(input.now / 1000))
        .sign(key.privateKey);
    },
  };
}

/** A new ECDSA P-256 key pair whose private key cannot be exported, in memory (Node, or no IndexedDB). */
export function memoryKeyPair(): Promise<CryptoKeyPair> {
  return crypto.subtle.generateKey({ name: 'ECDSA', namedCurve: 'P-256' }, false, ['sign', 'verify']) as Promise<CryptoKeyPair>;
}

const DB_NAME = 'tessera-dpop';
const STORE = 'keys';

/**
 * The browser's key pair for one auth server, kept in IndexedDB: CryptoKey objects are
 * stored as they are (structured clone), so the non-extractable private key survives
 * reloads and is shared by every tab of the origin, yet no script can read its bytes.
 * Two tabs creating it at once converge on one: the second `add` fails and re-reads.
 */
export function indexedDbKeyPair(name: string): DpopKeySource {
  return async () => {
    const db = await openDb();
    try {
      const existing = await request<CryptoKeyPair | undefined>(db.transaction(STORE, 'readonly').objectStore(STORE).get(name));
      if (existing?.privateKey && existing.publicKey) return existing;
      const created = await memoryKeyPair();
      try {
        await request(db.transaction(STORE, 'readwrite').objectStore(STORE).add(created, name));
        return created;
      } catch {
        const winner = await request<CryptoKeyPair | undefined>(db.transaction(STORE, 'readonly').objectStore(STORE).get(name));
        if (!winner) throw new Error('DPoP: could not store the key pair in IndexedDB');
        return winner;
      }
    } finally {
      db.close();
    }
  };
}

function openDb(): Promise<IDBDatabase> {
  const opening = indexedDB.open(DB_NAME, 1);
  opening.onupgradeneeded = () => opening.result.createObjectStore(STORE);
  return request(opening);
}

function request<T>(req: IDBRequest<T> | IDBRequest): Promise<T> {
  return new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result as T);
    req.onerror = () => reject(req.error);
  });
}

/** `ath`: base64url(SHA-256(access token)) (RFC 9449 §4.2). */
export async function accessTokenHash(token: string): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(token)));
  let binary = '';
  for (const byte of digest) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
