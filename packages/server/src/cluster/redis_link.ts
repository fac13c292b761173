import { createHash } from 'node:crypto';
import { type DpopReplayCache, memoryReplayCache } from '@tessera/verify';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { RateLimit } from '../config.js';
import { type Limiter, localLimiter, RateLimiter, slidingWait } from '../lib/rate_limiter.js';

const REVOCATIONS = 'tessera:revocations';
const KEYS_CHANGED = 'tessera:keys';

/**
 * Check-and-count in one step on the server, so instances racing on one key
 * cannot both pass. Returns {counted (1|0), current, previous}.
 */
const CONSUME = `
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
local prev = tonumber(redis.call('GET', KEYS[2]) or '0')
local max = tonumber(ARGV[1])
local size = tonumber(ARGV[2])
local elapsed = tonumber(ARGV[3])
if prev * (1 - elapsed / size) + cur >= max then return {0, cur, prev} end
redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], size * 2)
return {1, cur + 1, prev}
`;

/**
 * Redis as an accelerator, never the source of truth: shared rate limits,
 * revocations pushed to every instance at once, key-ring reloads after a rotation.
 * Every command fails fast while Redis is down (no offline queue), and each user of
 * it falls back to what one instance can do alone: per-instance limits, database
 * polling for revocations, the periodic key reload. ioredis reconnects by itself.
 */
export class RedisLink {
  readonly #command: Redis;
  readonly #subscriber: Redis;
  readonly #log: Logger;
  #down = false;

  private constructor(url: string, log: Logger) {
    const options = { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectTimeout: 2_000, retryStrategy: (n: number) => Math.min(200 * n, 2_000) };
    this.#command = new Redis(url, options);
    // The subscriber (re)subscribes itself each time it is ready (see subscribe): a
    // SUBSCRIBE queued before the ready check would put the connection in subscriber
    // mode under the check's INFO, and the subscription would be lost.
    this.#subscriber = new Redis(url, { ...options, autoResubscribe: false });
    this.#log = log;
    for (const client of [this.#command, this.#subscriber]) client.on('error', () => this.#markDown());
    this.#command.on('ready', () => {
      if (this.#down) this.#log.info('redis is back: limits are shared again');
      this.#down = false;
    });
  }

  static connect(url: string, log: Logger): RedisLink {
    return new RedisLink(url, log);
  }

  /** Whether the last command reached Redis. */
  get healthy(): boolean {
    return !this.#down && this.#command.status === 'ready';
  }

  /** A limiter shared by every instance through Redis, falling back to `fallback` while Redis is down. */
  limiter(name: string, limit: RateLimit): Limiter {
    const local = localLimiter(new RateLimiter(limit));
    const size = limit.windowSeconds * 1000;
    const keys = (key: string, now: number) => {
      const start = Math.floor(now / size) * size;
      return { start, current: `tessera:rl:${name}:${key}:${start}`, previous: `tessera:rl:${name}:${key}:${start - size}` };
    };
    // Redis is an accelerator: when a call fails, mark it down and answer from this instance.
    const orLocal = async <T>(remote: () => Promise<T>, fallback: () => T | Promise<T>): Promise<T> => {
      try {
        return await remote();
      } catch {
        this.#markDown();
        return fallback();
      }
    };
    return {
      retryAfter: (key, now) => {
        const k = keys(key, now);
        return orLocal(async () => {
          const [current, previous] = await this.#command.mget(k.current, k.previous);
          return slidingWait(limit, k.start, now, Number(current ?? 0), Number(previous ?? 0));
        }, () => local.retryAfter(key, now));
      },
      consume: (key, now) => {
        const k = keys(key, now);
        return orLocal(async () => {
          const [counted, current, previous] = (await this.#command.eval(CONSUME, 2, k.current, k.previous, limit.max, size, now - k.start)) as [number, number, number];
          return counted === 1 ? 0 : slidingWait(limit, k.start, now, current, previous);
        }, () => local.consume(key, now));
      },
      refund: (key, now) => {
        const k = keys(key, now);
        return orLocal(async () => {
          await this.#command.eval("if tonumber(redis.call('GET', KEYS[1]) or '0') > 0 then redis.call('DECR', KEYS[1]) end", 1, k.current);
        }, () => local.refund(key, now));
      },
    };
  }

  /**
   * DPoP proof ids seen by any instance (SET NX with a TTL): a proof replayed to
   * another instance is refused too. Every id is remembered in this instance's memory
   * as well, so a Redis outage forgets nothing this instance saw; while Redis is down,
   * a replay to a different instance within the window may pass. Keys are stored as a
   * fixed-size hash, whatever length of `jti` a client sends.
   */
  replayCache(): DpopReplayCache {
    const local = memoryReplayCache();
    return {
      remember: async (key, ttlMs, now) => {
        const fresh = await local.remember(key, ttlMs, now);
        try {
          const digest = createHash('sha256').update(key).digest('base64url').slice(0, 22);
          const shared = (await this.#command.set(`tessera:dpop:${digest}`, '1', 'PX', ttlMs, 'NX')) === 'OK';
          return fresh && shared;
        } catch {
          this.#markDown();
          return fresh;
        }
      },
    };
  }

  /**
   * Tells every instance that sessions were revoked, so that each reads the feed from
   * the database now. Best effort: the database poll is the backstop.
   */
  publishRevocation(): void {
    this.#command.publish(REVOCATIONS, '1').catch(() => this.#markDown());
  }

  /** Tells every instance to reload its key ring. */
  publishKeysChanged(): void {
    this.#command.publish(KEYS_CHANGED, '1').catch(() => this.#markDown());
  }

  /** Subscribes to revocations and key changes from all instances (this one included). */
  async subscribe(handlers: { revoked(): void; keysChanged(): void }): Promise<void> {
    this.#subscriber.on('message', (channel: string) => {
      if (channel === KEYS_CHANGED) handlers.keysChanged();
      else if (channel === REVOCATIONS) handlers.revoked();
    });
    const subscribe = () => this.#subscriber.subscribe(REVOCATIONS, KEYS_CHANGED).catch(() => this.#markDown());
    this.#subscriber.on('ready', () => {
      void subscribe();
      // Whatever was published while we were away: read the feed and reload the keys now.
      handlers.revoked();
      handlers.keysChanged();
    });
    if (this.#subscriber.status === 'ready') await subscribe();
  }

  async close(): Promise<void> {
    this.#command.disconnect();
    this.#subscriber.disconnect();
  }

  #markDown(): void {
    if (!this.#down) this.#log.warn('redis is unavailable: rate limits are per instance and revocations are found by polling until it is back');
    this.#down = true;
  }
}
