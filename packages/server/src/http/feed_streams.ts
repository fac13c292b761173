import type { ServerResponse } from 'node:http';
import type { Logger } from 'pino';
import type { Revocation, RevocationHub } from '../flows/revocation_hub.js';

/** Bounds on the revocation feed's event streams. See the README ("Revocation feed") for how they were chosen. */
export interface FeedStreamLimits {
  /** Open streams per client address (IPv6 by /64). */
  perAddress: number;
  /** Open streams on this instance: the memory budget divided by what one stream may hold. */
  total: number;
  /** A stream whose unsent output stays above the socket's high-water mark for this long is dropped (ms). */
  slowConsumerMs: number;
  /** Seconds between heartbeat events. */
  heartbeatSeconds: number;
}

/** Revocations written per step: one write of about 30 KiB, then the stream waits for the socket. */
const EVENTS_PER_WRITE = 200;

/** Output a stream may hold beyond the socket's own buffers before it is dropped outright. */
export const MAX_BUFFERED_BYTES = 256 * 1024;

export type Admission = { ok: true } | { ok: false; scope: 'address' | 'instance' };

/** What a stream does, counted for the metrics. */
export interface FeedStreamEvents {
  opened(): void;
  dropped(reason: 'slow_consumer' | 'buffer' | 'shutdown'): void;
}

/**
 * The open event streams of the revocation feed on one instance. Each stream has its
 * own cursor into the hub's numbering and is written only while its socket takes the
 * data (backpressure): a client that does not read holds at most one write beyond
 * the socket's buffers, and is dropped when it stays behind; it resumes from its
 * cursor (`Last-Event-ID`) when it reconnects. Streams are capped per client
 * address and per instance, and a refused client pages the JSON feed instead, so no
 * client can keep a verifier from its revocations.
 */
export class FeedStreams {
  readonly #hub: RevocationHub;
  readonly #limits: FeedStreamLimits;
  readonly #log: Logger;
  readonly #events: FeedStreamEvents;
  readonly #streams = new Set<FeedStream>();
  readonly #perAddress = new Map<string, number>();
  readonly #unsubscribe: () => void;
  readonly #unsubscribeReset: () => void;
  readonly #heartbeat: ReturnType<typeof setInterval>;
  readonly #sweep: ReturnType<typeof setInterval>;

  constructor(hub: RevocationHub, limits: FeedStreamLimits, log: Logger, events: FeedStreamEvents) {
    this.#hub = hub;
    this.#limits = limits;
    this.#log = log;
    this.#events = events;
    this.#unsubscribe = hub.subscribe(() => {
      for (const stream of this.#streams) stream.pump();
    });
    // A new epoch: every stream's cursor is void. End them; their clients come back,
    // are refused their old cursor, and read the feed again from the start.
    this.#unsubscribeReset = hub.onReset(() => {
      for (const stream of this.#streams) stream.end();
      this.#streams.clear();
    });
    this.#heartbeat = setInterval(() => {
      for (const stream of this.#streams) stream.heartbeat();
    }, limits.heartbeatSeconds * 1000);
    this.#heartbeat.unref();
    this.#sweep = setInterval(() => this.#dropSlow(), Math.max(50, Math.min(1000, limits.slowConsumerMs / 4)));
    this.#sweep.unref();
  }

  get size(): number {
    return this.#streams.size;
  }

  /** Bytes written to streams and not yet taken by their sockets. */
  get bufferedBytes(): number {
    let total = 0;
    for (const stream of this.#streams) total += stream.buffered;
    return total;
  }

  /** Whether one more stream from `address` fits. */
  admit(address: string): Admission {
    if ((this.#perAddress.get(address) ?? 0) >= this.#limits.perAddress) return { ok: false, scope: 'address' };
    if (this.#streams.size >= this.#limits.total) return { ok: false, scope: 'instance' };
    return { ok: true };
  }

  /** Starts streaming to `response` (already admitted) from position `after`. */
  open(response: ServerResponse, address: string, after: number): void {
    response.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
      'x-content-type-options': 'nosniff',
    });
    const stream = new FeedStream(this.#hub, response, after, this.#log);
    this.#streams.add(stream);
    this.#perAddress.set(address, (this.#perAddress.get(address) ?? 0) + 1);
    this.#events.opened();
    response.once('close', () => {
      this.#streams.delete(stream);
      const left = (this.#perAddress.get(address) ?? 1) - 1;
      if (left > 0) this.#perAddress.set(address, left);
      else this.#perAddress.delete(address);
    });
    stream.pump();
  }

  /** Ends every stream (shutdown); clients resume elsewhere from their cursor. */
  close(): void {
    clearInterval(this.#heartbeat);
    clearInterval(this.#sweep);
    this.#unsubscribe();
    this.#unsubscribeReset();
    for (const stream of this.#streams) {
      this.#events.dropped('shutdown');
      stream.end();
    }
    this.#streams.clear();
  }

  #dropSlow(): void {
    const now = performance.now();
    for (const stream of this.#streams) {
      const reason = stream.buffered > MAX_BUFFERED_BYTES ? 'buffer' : stream.congestedFor(now) > this.#limits.slowConsumerMs ? 'slow_consumer' : undefined;
      if (reason === undefined) continue;
      this.#streams.delete(stream);
      this.#events.dropped(reason);
      stream.destroy();
    }
  }
}

/** One client's stream: a cursor, and a pump that writes what is after it while the socket takes it. */
class FeedStream {
  readonly #hub: RevocationHub;
  readonly #response: ServerResponse;
  readonly #log: Logger;
  #after: number;
  #caughtUp = false;
  #pumping = false;
  #again = false;
  #congestedSince: number | undefined;
  #closed = false;

  constructor(hub: RevocationHub, response: ServerResponse, after: number, log: Logger) {
    this.#hub = hub;
    this.#response = response;
    this.#after = after;
    this.#log = log;
    response.on('drain', () => {
      this.#congestedSince = undefined;
      this.pump();
    });
    response.once('close', () => {
      this.#closed = true;
    });
  }

  get buffered(): number {
    return this.#response.writableLength;
  }

  congestedFor(now: number): number {
    return this.#congestedSince === undefined ? 0 : now - this.#congestedSince;
  }

  /** Writes what is past the cursor, a step at a time, until caught up or the socket is full. */
  pump(): void {
    if (this.#closed) return;
    if (this.#pumping) {
      this.#again = true;
      return;
    }
    this.#pumping = true;
    void this.#run().finally(() => {
      this.#pumping = false;
    });
  }

  async #run(): Promise<void> {
    try {
      do {
        this.#again = false;
        for (;;) {
          if (this.#closed || this.#congestedSince !== undefined) return;
          const slice = await this.#hub.page(this.#after, EVENTS_PER_WRITE);
          if (this.#closed) return;
          this.#after = slice.after;
          const text = slice.revocations.map((r) => (r.event ??= revokedEvent(this.#hub.cursor(r.position), r))).join('');
          // The first heartbeat marks the end of the backlog: the client is up to date
          // (only if this instance is reading the database, or it would be a lie).
          const done = !slice.more && this.#hub.fresh;
          const chunk = done && !this.#caughtUp ? text + this.#heartbeatEvent() : text;
          if (done) this.#caughtUp = true;
          if (chunk.length > 0 && !this.#response.write(chunk)) this.#congestedSince = performance.now();
          if (!slice.more) break;
          // Many streams catching up on a burst take turns with the rest of the server.
          await new Promise((resolve) => setImmediate(resolve));
        }
      } while (this.#again);
    } catch (error) {
      // The database failed while this stream was behind: end it, the client resumes from its cursor.
      this.#log.warn({ err: error }, 'revocation feed: a stream could not be served');
      this.end();
    }
  }

  /** A heartbeat, carrying the cursor as its id, when the stream is up to date and its socket is keeping up. */
  heartbeat(): void {
    if (this.#closed || this.#pumping || this.#congestedSince !== undefined || !this.#hub.fresh) return;
    // Caught up while this instance could not read the database: say so now that it can.
    if (!this.#caughtUp) {
      this.pump();
      return;
    }
    if (!this.#response.write(this.#heartbeatEvent())) this.#congestedSince = performance.now();
  }

  end(): void {
    this.#closed = true;
    this.#response.end();
  }

  destroy(): void {
    this.#closed = true;
    this.#response.destroy();
  }

  #heartbeatEvent(): string {
    return `event: heartbeat\nid: ${this.#hub.cursor(this.#after)}\ndata: {"at":"${new Date().toISOString()}"}\n\n`;
  }
}

function revokedEvent(id: string, r: Revocation): string {
  return `event: revoked\nid: ${id}\ndata: ${JSON.stringify(revocationJson(r))}\n\n`;
}

/** A revocation as the feed's JSON and events carry it. */
export function revocationJson(r: Revocation): { session_id: string; revoked_at: string; remember_until: string } {
  return { session_id: r.sessionId, revoked_at: r.revokedAt.toISOString(), remember_until: r.rememberUntil.toISOString() };
}
