import type { RateLimit } from '../config.js';

interface Window {
  start: number;
  current: number;
  previous: number;
}

/**
 * Seconds to wait under a sliding window whose fixed window started at `start`,
 * with `current` attempts in it and `previous` in the one before; 0 when under
 * the limit. Shared by the in-process and the Redis limiter.
 */
export function slidingWait(limit: RateLimit, start: number, now: number, current: number, previous: number): number {
  const size = limit.windowSeconds * 1000;
  const elapsed = (now - start) / size;
  const estimate = previous * (1 - elapsed) + current;
  if (estimate < limit.max) return 0;
  // The current window alone is full: wait for the next one, plus whatever of this
  // one still weighs on it then.
  if (current >= limit.max) {
    const wait = start + size - now + size * (1 - limit.max / current);
    return Math.max(1, Math.ceil(wait / 1000) + 1);
  }
  // The previous window's weight fades linearly: wait until it has faded enough.
  const fadeUntil = size * (1 - (limit.max - current) / previous);
  return Math.max(1, Math.ceil((fadeUntil - (now - start)) / 1000) + 1);
}

/** A rate limiter as the flows use it: in-process, or shared through Redis. */
export interface Limiter {
  /** Seconds until `key` may try again (0: now). Counts nothing. */
  retryAfter(key: string, now: number): Promise<number>;
  /** Counts one attempt if under the limit, atomically; returns the wait otherwise (0: counted). */
  consume(key: string, now: number): Promise<number>;
  /** Takes back one attempt of the current window. */
  refund(key: string, now: number): Promise<void>;
}

/** The in-process limiter behind the `Limiter` interface. */
export function localLimiter(limiter: RateLimiter): Limiter {
  return {
    retryAfter: async (key, now) => limiter.retryAfter(key, now),
    consume: async (key, now) => limiter.consume(key, now),
    refund: async (key, now) => limiter.refund(key, now),
  };
}

/**
 * A sliding-window counter per key (an IP, a username): the previous fixed
 * window's count, weighted by how much of it still overlaps, plus the current
 * one's. It forgets on its own, so a flood of failures delays a real user by
 * one window at most and never locks an account for good.
 * In-process: each instance counts on its own.
 */
export class RateLimiter {
  readonly #limit: RateLimit;
  readonly #windows = new Map<string, Window>();
  readonly #maxKeys: number;

  constructor(limit: RateLimit, options: { maxKeys?: number } = {}) {
    this.#limit = limit;
    this.#maxKeys = options.maxKeys ?? 100_000;
  }

  /** Seconds until `key` may try again, or 0 when it may try now. Counts nothing. */
  retryAfter(key: string, now: number): number {
    const w = this.#window(key, now, false);
    return w ? slidingWait(this.#limit, w.start, now, w.current, w.previous) : 0;
  }

  /** Counts one attempt for `key`. */
  hit(key: string, now: number): void {
    const w = this.#window(key, now, true);
    if (w) w.current += 1;
  }

  /** Takes back one attempt counted in the current window (a login that turned out right). */
  refund(key: string, now: number): void {
    const w = this.#windows.get(key);
    const size = this.#limit.windowSeconds * 1000;
    if (w && w.start === Math.floor(now / size) * size && w.current > 0) w.current -= 1;
  }

  /** Counts one attempt and says how long to wait if it is over the limit (0: go ahead). */
  consume(key: string, now: number): number {
    const wait = this.retryAfter(key, now);
    if (wait === 0) this.hit(key, now);
    return wait;
  }

  #window(key: string, now: number, create: boolean): Window | undefined {
    const size = this.#limit.windowSeconds * 1000;
    const start = Math.floor(now / size) * size;
    let w = this.#windows.get(key);
    if (w && w.start !== start) {
      // Roll forward: the old current becomes previous only if it was the window just before.
      w = { start, previous: w.start === start - size ? w.current : 0, current: 0 };
      if (w.previous === 0 && !create) {
        this.#windows.delete(key);
        return undefined;
      }
      this.#windows.set(key, w);
    }
    if (!w && create) {
      if (this.#windows.size >= this.#maxKeys) this.#prune(now);
      w = { start, previous: 0, current: 0 };
      this.#windows.set(key, w);
    }
    return w;
  }

  #prune(now: number): void {
    const horizon = now - 2 * this.#limit.windowSeconds * 1000;
    for (const [key, w] of this.#windows) if (w.start < horizon) this.#windows.delete(key);
    // Still full (a flood of distinct keys): drop the oldest half rather than grow without bound.
    if (this.#windows.size >= this.#maxKeys) {
      let drop = this.#windows.size / 2;
      for (const key of this.#windows.keys()) {
        if (drop-- <= 0) break;
        this.#windows.delete(key);
      }
    }
  }
}
