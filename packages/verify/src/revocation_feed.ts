import { createParser } from 'eventsource-parser';

export interface RevocationFeedOptions {
  /** The auth server's feed, `<issuer>/auth/revocations`. */
  url: string;
  fetch: typeof globalThis.fetch;
  now: () => number;
  /** Seconds without news from the feed (a heartbeat, or an up-to-date page) after which it counts as down. */
  maxStaleness: number;
  /** The feed secret (`--feed-secret`), sent as `Authorization: Bearer`. */
  secret?: string;
  /** Follow the event stream (default), or only page the JSON feed. */
  stream: boolean;
  /** Milliseconds between pages of the JSON feed while not streaming. */
  pollIntervalMs: number;
}

/** Milliseconds of paging the JSON feed before a refused stream is tried again, when the server gives no Retry-After. */
const STREAM_RETRY_MS = 30_000;

/** How long a revocation with an unreadable `remember_until` is remembered: a revocation is never dropped for a bad date. */
const FALLBACK_REMEMBER_MS = 24 * 60 * 60 * 1000;

/** No access token lives longer than this: a `remember_until` further out is a bad feed, not a reason to grow forever. */
const MAX_REMEMBER_MS = 7 * 24 * 60 * 60 * 1000;

/** How often expired revocations are forgotten, in ms of the injected clock. */
const PRUNE_EVERY_MS = 60_000;

interface RevokedJson {
  session_id?: unknown;
  remember_until?: unknown;
}

/** The server refused this request for a reason a retry elsewhere fixes: the cursor, or the stream caps. */
class FeedRefusal extends Error {
  constructor(
    readonly status: number,
    readonly retryAfterMs: number | undefined,
  ) {
    super(`revocation feed answered ${status}`);
  }
}

/**
 * Follows the auth server's revocation feed and remembers revoked session ids until
 * their access tokens have expired. It streams (SSE) when it can: the backlog first,
 * then each revocation as it commits, resuming from its cursor after a drop. When the
 * server will not give it a stream (its caps are full, whoever holds them), it pages
 * the JSON feed every `pollIntervalMs` instead and tries the stream again later, so
 * it is never more than its staleness bound behind. A cursor the server no longer
 * knows (another database) starts it over from the beginning of the feed.
 */
export class RevocationFeed {
  readonly #options: RevocationFeedOptions;
  readonly #revoked = new Map<string, number>();
  readonly #abort = new AbortController();
  readonly #started: number;
  /** When the feed last showed that nothing was missing (a heartbeat, a last page). */
  #upToDate: number | undefined;
  #cursor: string | undefined;
  #running = false;
  #lastPrune: number;
  #sizeAtPrune = 0;
  /** No stream before this time (ms of the real clock): the server refused one. */
  #streamAfter = 0;
  readonly #ready: Promise<void>;
  #resolveReady!: () => void;
  readonly #answered: Promise<void>;
  #resolveAnswered!: () => void;
  #mode: 'stream' | 'poll' = 'stream';

  constructor(options: RevocationFeedOptions) {
    this.#options = options;
    this.#started = options.now();
    this.#lastPrune = this.#started;
    this.#ready = new Promise((resolve) => {
      this.#resolveReady = resolve;
    });
    this.#answered = new Promise((resolve) => {
      this.#resolveAnswered = resolve;
    });
  }

  /** Starts following the feed (idempotent). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    void this.#loop();
  }

  /** Resolves once the feed has been read to its end for the first time: every revocation until then is known. */
  ready(): Promise<void> {
    return this.#ready;
  }

  /** Resolves when the server has first answered at all. */
  answered(): Promise<void> {
    return this.#answered;
  }

  /** Whether the feed has been read to its end at least once. */
  get caughtUp(): boolean {
    return this.#upToDate !== undefined;
  }

  /** How it follows the feed right now: an event stream, or paging the JSON feed. */
  get mode(): 'stream' | 'poll' {
    return this.#mode;
  }

  /** How many revoked sessions it remembers (their access tokens may still be presented). */
  get size(): number {
    return this.#revoked.size;
  }

  /** Whether a session has been revoked (as far as the feed has told). */
  isRevoked(sessionId: string): boolean {
    const until = this.#revoked.get(sessionId);
    if (until === undefined) return false;
    if (until <= this.#options.now()) {
      this.#revoked.delete(sessionId);
      return false;
    }
    return true;
  }

  /** True when the feed has not shown it is up to date (not even a heartbeat) for longer than `maxStaleness`. */
  isStale(): boolean {
    return this.#options.now() - (this.#upToDate ?? this.#started) > this.#options.maxStaleness * 1000;
  }

  close(): void {
    this.#running = false;
    this.#abort.abort();
  }

  async #loop(): Promise<void> {
    // Quick first retries: an auth server that starts beside this one is up in a moment.
    let backoff = 250;
    while (this.#running) {
      let pause = 0;
      try {
        if (this.#options.stream && Date.now() >= this.#streamAfter) {
          this.#mode = 'stream';
          await this.#follow();
          pause = 100; // the server ended the stream (a restart, a drop, our silence watchdog): resume from the cursor
        } else {
          this.#mode = 'poll';
          await this.#page();
          pause = this.#options.pollIntervalMs;
        }
        backoff = 250;
      } catch (error) {
        if (!this.#running) return;
        if (error instanceof FeedRefusal && error.status === 400) {
          // The cursor is not this server's (a new database): read the whole feed again.
          this.#cursor = undefined;
        } else if (error instanceof FeedRefusal && (error.status === 429 || error.status === 503) && this.#mode === 'stream') {
          // No stream for us now: page the JSON feed meanwhile, and at once.
          this.#streamAfter = Date.now() + (error.retryAfterMs ?? STREAM_RETRY_MS);
        } else {
          pause = backoff;
          backoff = Math.min(backoff * 2, 5_000);
        }
      }
      if (!this.#running) return;
      if (pause > 0) await sleep(pause, this.#abort.signal);
    }
  }

  #headers(accept: string): Record<string, string> {
    return this.#options.secret ? { accept, authorization: `Bearer ${this.#options.secret}` } : { accept };
  }

  #url(): URL {
    const url = new URL(this.#options.url);
    if (this.#cursor !== undefined) url.searchParams.set('since', this.#cursor);
    return url;
  }

  async #request(accept: string, signal: AbortSignal = this.#abort.signal): Promise<Response> {
    const response = await this.#options.fetch(this.#url(), { headers: this.#headers(accept), signal, redirect: 'error' });
    this.#resolveAnswered();
    if (!response.ok) {
      await response.body?.cancel();
      const retryAfter = Number(response.headers.get('retry-after'));
      throw new FeedRefusal(response.status, Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter * 1000 : undefined);
    }
    return response;
  }

  /** Pages the JSON feed from the cursor until it says there is no more. */
  async #page(): Promise<void> {
    for (;;) {
      const response = await this.#request('application/json');
      const page = (await response.json()) as { revocations?: unknown; cursor?: unknown; more?: unknown };
      if (!Array.isArray(page.revocations) || typeof page.cursor !== 'string') throw new Error('revocation feed: unexpected answer');
      for (const entry of page.revocations) this.#remember(entry as RevokedJson);
      this.#cursor = page.cursor;
      if (page.more !== true) break;
    }
    this.#markUpToDate();
  }

  /** Follows the event stream until it ends: the backlog, a heartbeat (up to date), then live revocations. */
  async #follow(): Promise<void> {
    // A connection that goes silent (a half-open socket, a proxy that stopped passing
    // data) would never end by itself: with no byte for two thirds of maxStaleness
    // (heartbeats come every 10 s), drop it and reconnect before the verifier goes stale.
    const connection = new AbortController();
    const onClose = () => connection.abort();
    this.#abort.signal.addEventListener('abort', onClose, { once: true });
    const silenceMs = Math.max(5_000, (this.#options.maxStaleness * 1000 * 2) / 3);
    let watchdog = setTimeout(onClose, silenceMs);
    const fed = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(onClose, silenceMs);
    };
    try {
      await this.#stream(connection.signal, fed);
    } catch (error) {
      // Our own watchdog ended it: a reconnect like any other, not a failure to back off from.
      if (!connection.signal.aborted || this.#abort.signal.aborted) throw error;
    } finally {
      clearTimeout(watchdog);
      this.#abort.signal.removeEventListener('abort', onClose);
    }
  }

  async #stream(signal: AbortSignal, fed: () => void): Promise<void> {
    const response = await this.#request('text/event-stream', signal);
    if (!response.body) throw new Error('revocation feed: no body');
    let caughtUp = false;
    const parser = createParser({
      onEvent: (message) => {
        if (message.event === 'revoked') {
          try {
            this.#remember(JSON.parse(message.data) as RevokedJson);
          } catch {
            return; // a malformed event is skipped; the stream goes on
          }
        } else if (message.event === 'heartbeat') {
          caughtUp = true;
        } else {
          return;
        }
        if (message.id) this.#cursor = message.id;
        if (caughtUp) this.#markUpToDate();
      },
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      fed();
      parser.feed(value);
      this.#prune();
    }
  }

  #remember(entry: RevokedJson): void {
    if (typeof entry.session_id !== 'string') return;
    const now = this.#options.now();
    const until = typeof entry.remember_until === 'string' ? Date.parse(entry.remember_until) : Number.NaN;
    this.#revoked.set(entry.session_id, Number.isFinite(until) ? Math.min(until, now + MAX_REMEMBER_MS) : now + FALLBACK_REMEMBER_MS);
  }

  #markUpToDate(): void {
    this.#upToDate = this.#options.now();
    this.#resolveReady();
    this.#prune();
  }

  #prune(): void {
    const now = this.#options.now();
    // On the clock, or when the map has doubled since the last pass (a burst), never per event.
    if (now - this.#lastPrune < PRUNE_EVERY_MS && this.#revoked.size < 2 * this.#sizeAtPrune + 10_000) return;
    this.#lastPrune = now;
    for (const [id, until] of this.#revoked) if (until <= now) this.#revoked.delete(id);
    this.#sizeAtPrune = this.#revoked.size;
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve();
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    (timer as { unref?: () => void }).unref?.();
    signal.addEventListener('abort', onAbort, { once: true });
  });
}
