import type { Store } from '../store/store.js';

/** One revoked session as the feed tells it: verifiers remember it until `rememberUntil`. */
export interface Revocation {
  sessionId: string;
  revokedAt: Date;
  /** After this, every access token of the session has expired anyway. */
  rememberUntil: Date;
}

export interface RevocationHubOptions {
  store: Store;
  /** Access token lifetime in seconds: how long a revocation matters. */
  accessTtl: number;
  now: () => number;
  /** How often to look for revocations made by other instances, in ms. Default 1000. */
  pollIntervalMs?: number;
  /** At most this many live subscribers (SSE streams) per instance. Default 1000. */
  maxSubscribers?: number;
}

/**
 * Fans revocations out to the feed's subscribers. Revocations made by this
 * instance are pushed the moment their transaction commits; those made by other
 * instances sharing the database are found by polling it (once per interval for
 * all subscribers, only while there are any). So a logout reaches a subscribed
 * verifier at once from this instance, and within the poll interval (1 s) from
 * any other.
 */
export class RevocationHub {
  readonly #options: Required<RevocationHubOptions>;
  readonly #subscribers = new Set<(r: Revocation) => void>();
  /** Recently delivered session ids, so a local push and the poller do not send twice. */
  readonly #seen = new Map<string, number>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #pollCursor = 0;
  #polling = false;

  constructor(options: RevocationHubOptions) {
    this.#options = { pollIntervalMs: 1000, maxSubscribers: 1000, ...options };
  }

  /** Everything revoked after `since` that still matters (within one access-token lifetime). */
  async since(since: number | undefined): Promise<Revocation[]> {
    const horizon = this.#options.now() - this.#options.accessTtl * 1000;
    const from = Math.max(horizon, since ?? horizon);
    const rows = await this.#options.store.listRevocations(new Date(from));
    return rows.map((r) => this.#revocation(r.sessionId, r.revokedAt));
  }

  /** Called after a session's revocation committed on this instance. */
  publish(sessionId: string, revokedAt: Date): void {
    this.#deliver(this.#revocation(sessionId, revokedAt));
  }

  /** Subscribes; returns the unsubscribe function, or `undefined` when full. */
  subscribe(listener: (r: Revocation) => void): (() => void) | undefined {
    if (this.#subscribers.size >= this.#options.maxSubscribers) return undefined;
    this.#subscribers.add(listener);
    if (!this.#timer) {
      this.#pollCursor = this.#options.now();
      this.#timer = setInterval(() => void this.#poll(), this.#options.pollIntervalMs);
      this.#timer.unref();
    }
    return () => {
      this.#subscribers.delete(listener);
      if (this.#subscribers.size === 0 && this.#timer) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    };
  }

  get subscriberCount(): number {
    return this.#subscribers.size;
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#subscribers.clear();
  }

  async #poll(): Promise<void> {
    if (this.#polling) return;
    this.#polling = true;
    try {
      // Overlap by a few seconds: another instance's commit may land with an
      // earlier revoked_at than rows we already saw (clocks, commit order).
      const rows = await this.#options.store.listRevocations(new Date(this.#pollCursor - 5_000));
      for (const row of rows) {
        this.#deliver(this.#revocation(row.sessionId, row.revokedAt));
        this.#pollCursor = Math.max(this.#pollCursor, row.revokedAt.getTime());
      }
    } catch {
      // The database is down: the next tick tries again; subscribers notice nothing new.
    } finally {
      this.#polling = false;
    }
  }

  #deliver(revocation: Revocation): void {
    const now = this.#options.now();
    if (this.#seen.has(revocation.sessionId)) return;
    this.#seen.set(revocation.sessionId, revocation.rememberUntil.getTime());
    if (this.#seen.size > 10_000) {
      for (const [id, until] of this.#seen) if (until < now) this.#seen.delete(id);
    }
    for (const listener of this.#subscribers) listener(revocation);
  }

  #revocation(sessionId: string, revokedAt: Date): Revocation {
    return { sessionId, revokedAt, rememberUntil: new Date(revokedAt.getTime() + this.#options.accessTtl * 1000) };
  }
}
