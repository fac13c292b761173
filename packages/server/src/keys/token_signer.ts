import { KeyObject } from 'node:crypto';
import type { SigningAlgorithm } from '@tessera/protocol';
import { createSigner } from 'fast-jwt';
import { type CryptoKey, SignJWT } from 'jose';
import type { LoadedKey } from './key_ring.js';

/** A token's claims: `iat` and `exp` are the caller's, in seconds, and are kept as given. */
export type TokenClaims = { iat: number; exp: number } & Record<string, unknown>;

/**
 * Algorithms whose signature costs about 30 µs of CPU: on WebCrypto each sign is a job
 * handed to libuv's pool and back, which costs the event loop more than the signature
 * (in a refresh profile under load, half of the main thread's time was that hand-off).
 * They are signed synchronously on node:crypto through fast-jwt. RS256 and PS256 take
 * about 270 µs: they stay on the pool (jose), off the event loop.
 */
const SIGNED_IN_PLACE: ReadonlySet<SigningAlgorithm> = new Set(['EdDSA', 'ES256']);

/** One synchronous signer per private key, kid and `typ` (fast-jwt fixes the header at creation). */
const inPlace = new WeakMap<CryptoKey, Map<string, (claims: TokenClaims) => string>>();

/** Signs `claims` as a compact JWS with the header `{alg, typ, kid}` of `signer`. */
export async function signToken(signer: LoadedKey, typ: string, claims: TokenClaims): Promise<string> {
  // fast-jwt would drop an exp of 0 or NaN (a token that never expires) where jose throws:
  // both paths take whole seconds, exp positive and not before iat (a session that ends
  // within the second of a refresh gives exp = iat), and no nbf.
  const { iat, exp } = claims;
  if (!Number.isSafeInteger(iat) || !Number.isSafeInteger(exp) || exp <= 0 || exp < iat || 'nbf' in claims) {
    throw new TypeError('a token needs whole-second iat <= exp (and no nbf)');
  }
  if (!SIGNED_IN_PLACE.has(signer.alg)) {
    return new SignJWT({ ...claims }).setProtectedHeader({ alg: signer.alg, kid: signer.kid, typ }).sign(signer.key);
  }
  let byHeader = inPlace.get(signer.key);
  if (!byHeader) {
    byHeader = new Map();
    inPlace.set(signer.key, byHeader);
  }
  const header = `${signer.kid}\0${signer.alg}\0${typ}`;
  let sign = byHeader.get(header);
  if (!sign) {
    // The PEM only lives for this call: fast-jwt turns it into a KeyObject at once.
    const pem = KeyObject.from(signer.key).export({ format: 'pem', type: 'pkcs8' }) as string;
    // `iat` comes from the claims (fast-jwt keeps a given iat); no expiresIn, so `exp` is the claim's.
    sign = createSigner({ key: pem, algorithm: signer.alg, kid: signer.kid, header: { alg: signer.alg, typ } });
    byHeader.set(header, sign);
  }
  return sign(claims);
}
