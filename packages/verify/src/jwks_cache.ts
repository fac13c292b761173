import type { SigningAlgorithm } from '@tessera/protocol';
import type { JWK } from 'jose';
import { VERIFY_DEFAULTS } from './defaults.js';
import type { KeyVerifier, KeyVerifierEngine, VerifyPolicy } from './key_verifier.js';

export interface JwksCacheOptions {
  jwksUri: string;
  algorithms: readonly SigningAlgorithm[];
  engine: KeyVerifierEngine;
  policy: VerifyPolicy;
  fetch: typeof globalThis.fetch;
  now: () => number;
  cooldownMs: number;
  timeoutMs: number;
  /** Called after a refetch removed or replaced a key (not when one is only added). */
  onKeysChanged?: () => void;
}

interface Entry {
  alg: SigningAlgorithm;
  key: KeyVerifier;
  /** The JWK as published, to reuse the imported key when a refetch returns it unchanged. */
  source: string;
}

/**
 * The auth server's public keys, fetched from its JWKS and imported once.
 * - Honours the response's `Cache-Control: max-age` (clamped to 30 s..1 day).
 * - When that expires, known keys keep verifying while a refetch runs in the
 *   background (stale-while-revalidate), and keep verifying if it fails
 *   (stale-if-error): a JWKS outage never turns valid tokens away.
 * - An unknown `kid` triggers one refetch, at most once per cooldown, shared by
 *   every request waiting on it.
 * Keys are found by `kid` in this set only: a token's `jku`, `x5u`, `jwk` or `x5c`
 * header is never looked at.
 */
export class JwksCache {
  readonly #options: JwksCacheOptions;
  #keys = new Map<string, Entry>();
  #expiresAt = 0;
  #lastAttempt = Number.NEGATIVE_INFINITY;
  #inflight: Promise<void> | undefined;

  constructor(options: JwksCacheOptions) {
    this.#options = options;
  }

  /**
   * The key with this `kid` for this `alg` if it is known now, without waiting:
   * the hot path. Starts a background refetch when the set's max-age has passed.
   */
  peek(kid: string, alg: string): KeyVerifier | undefined {
    const entry = this.#keys.get(kid);
    if (entry === undefined || entry.alg !== alg) return undefined;
    this.revalidate();
    return entry.key;
  }

  /** Starts a background refetch when the set's max-age has passed (stale-while-revalidate). */
  revalidate(): void {
    if (this.#options.now() >= this.#expiresAt && !this.#inflight && this.#keys.size > 0) void this.refresh().catch(() => {});
  }

  /** The key with this `kid` for this `alg`, or `undefined` when there is none (fetching if allowed). */
  async get(kid: string, alg: string): Promise<KeyVerifier | undefined> {
    if (this.#keys.size === 0) await this.#fetchIfAllowed();
    else this.revalidate();
    let entry = this.#keys.get(kid);
    if (!entry) {
      await this.#fetchIfAllowed();
      entry = this.#keys.get(kid);
    }
    return entry && entry.alg === alg ? entry.key : undefined;
  }

  /** Joins a fetch under way, or starts one unless the cooldown forbids it. Never rejects. */
  async #fetchIfAllowed(): Promise<void> {
    if (!this.#inflight && this.#options.now() - this.#lastAttempt < this.#options.cooldownMs) return;
    await this.refresh().catch(() => {});
  }

  /** Fetches the JWKS now (single-flight). Rejects on failure, keeping the keys it had. */
  refresh(): Promise<void> {
    this.#inflight ??= this.#load().finally(() => {
      this.#inflight = undefined;
    });
    return this.#inflight;
  }

  /** How many keys are known (for tests and health checks). */
  get size(): number {
    return this.#keys.size;
  }

  async #load(): Promise<void> {
    this.#lastAttempt = this.#options.now();
    const response = await this.#options.fetch(this.#options.jwksUri, {
      headers: { accept: 'application/json' },
      redirect: 'error',
      signal: AbortSignal.timeout(this.#options.timeoutMs),
    });
    if (!response.ok) throw new Error(`JWKS answered ${response.status}`);
    const body = (await response.json()) as { keys?: unknown };
    if (!Array.isArray(body.keys)) throw new Error('JWKS has no keys array');
    const next = new Map<string, Entry>();
    for (const jwk of body.keys as JWK[]) {
      if (typeof jwk !== 'object' || jwk === null || typeof jwk.kid !== 'string') continue;
      if (jwk.use !== undefined && jwk.use !== 'sig') continue;
      const alg = jwk.alg as SigningAlgorithm;
      if (!this.#options.algorithms.includes(alg)) continue;
      if ('d' in jwk) continue; // a private key has no business in a JWKS: refuse to use it
      const source = JSON.stringify(jwk);
      const known = this.#keys.get(jwk.kid);
      if (known && known.source === source) {
        next.set(jwk.kid, known);
        continue;
      }
      try {
        next.set(jwk.kid, { alg, key: await this.#options.engine.prepare(jwk, alg, this.#options.policy), source });
      } catch {
        // A key we cannot import is skipped; the others still serve.
      }
    }
    const previous = this.#keys;
    this.#keys = next;
    if ([...previous].some(([kid, entry]) => next.get(kid) !== entry)) this.#options.onKeysChanged?.();
    this.#expiresAt = this.#options.now() + maxAgeMs(response.headers.get('cache-control'));
  }
}

function maxAgeMs(cacheControl: string | null): number {
  const match = cacheControl ? /(?:^|,)\s*max-age\s*=\s*(\d+)/i.exec(cacheControl) : null;
  const seconds = match ? Number(match[1]) : VERIFY_DEFAULTS.jwksMaxAgeSeconds;
  return Math.min(VERIFY_DEFAULTS.jwksMaxMaxAgeSeconds, Math.max(VERIFY_DEFAULTS.jwksMinMaxAgeSeconds, seconds)) * 1000;
}
