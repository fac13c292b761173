import type { AccessTokenClaims } from '@tessera/protocol';

interface Entry {
  claims: AccessTokenClaims;
  /** ms since the epoch from which the entry may be used (its `nbf`, if any). */
  from: number;
  /** ms since the epoch at which it is dropped: its `exp`, with no leeway. */
  until: number;
}

/**
 * Tokens already verified, keyed by their exact text (a Map key compares whole
 * strings, so two tokens never share an entry: no hash, no collisions). An entry
 * never outlives the token's `exp`, not even by the clock tolerance; the revocation
 * check is not the cache's business and runs on every hit. Bounded: when full, the
 * oldest entry makes room. Cleared when a key leaves or changes in the JWKS, so a
 * retired key's tokens stop verifying at once.
 *
 * The claims are frozen: one object is handed to every request that presents the
 * same token, so none of them can change what the next one sees.
 */
export class VerifiedTokenCache {
  readonly #max: number;
  #entries = new Map<string, Entry>();

  constructor(max: number) {
    this.#max = max;
  }

  get(token: string, nowMs: number): AccessTokenClaims | undefined {
    const entry = this.#entries.get(token);
    if (entry === undefined) return undefined;
    if (nowMs >= entry.until) {
      this.#entries.delete(token);
      return undefined;
    }
    return nowMs >= entry.from ? entry.claims : undefined;
  }

  set(token: string, claims: AccessTokenClaims, nowMs: number): AccessTokenClaims {
    const until = claims.exp * 1000;
    if (nowMs >= until) return claims;
    const nbf = (claims as { nbf?: number }).nbf;
    if (this.#entries.size >= this.#max) {
      const oldest = this.#entries.keys().next();
      if (!oldest.done) this.#entries.delete(oldest.value);
    }
    Object.freeze(claims.roles);
    if (Array.isArray(claims.aud)) Object.freeze(claims.aud);
    if (claims.cnf !== undefined) Object.freeze(claims.cnf);
    const frozen = Object.freeze(claims);
    this.#entries.set(token, { claims: frozen, from: nbf === undefined ? 0 : nbf * 1000, until });
    return frozen;
  }

  clear(): void {
    this.#entries.clear();
  }

  get size(): number {
    return this.#entries.size;
  }
}
