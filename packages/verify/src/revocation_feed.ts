import { createParser } from 'eventsource-parser';

export interface RevocationFeedOptions {
  /** The auth server's feed, `<issuer>/auth/revocations`. */
  url: string;
  fetch: typeof globalThis.fetch;
  now: () => number;
  /** Seconds without any word from the feed (events or heartbeats) after which it counts as down. */
  maxStaleness: number;
}

/**
 * Follows the auth server's revocation feed (SSE) and remembers revoked session
 * ids until their access tokens have expired. Reconnects by itself with back-off
 * (1 s doubling to 5 s) and resumes from its cursor, so nothing revoked during
 * an outage is missed once the feed is back.
 */
export class RevocationFeed {
  readonly #options: RevocationFeedOptions;
  readonly #revoked = new Map<string, number>();
  readonly #abort = new AbortController();
  readonly #started: number;
  #lastContact: number | undefined;
  #cursor: string | undefined;
  #running = false;
  #connected: Promise<void>;
  #resolveConnected!: () => void;

  constructor(options: RevocationFeedOptions) {
    this.#options = options;
    this.#started = options.now();
    this.#connected = new Promise((resolve) => {
      this.#resolveConnected = resolve;
    });
  }

  /** Starts following the feed (idempotent). */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    void this.#loop();
  }

  /** Resolves once the feed has answered for the first time. */
  ready(): Promise<void> {
    return this.#connected;
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

  /** True when the feed has said nothing (not even a heartbeat) for longer than `maxStaleness`. */
  isStale(): boolean {
    return this.#options.now() - (this.#lastContact ?? this.#started) > this.#options.maxStaleness * 1000;
  }

  close(): void {
    this.#running = false;
    this.#abort.abort();
  }

  async #loop(): Promise<void> {
    let backoff = 1000;
    while (this.#running) {
      try {
        await this.#follow();
        backoff = 1000;
      } catch {
        // Network error, 5xx, or a dropped stream: try again after a pause.
      }
      if (!this.#running) return;
      await sleep(backoff, this.#abort.signal);
      backoff = Math.min(backoff * 2, 5_000);
    }
  }

  async #follow(): Promise<void> {
    const url = new URL(this.#options.url);
    if (this.#cursor !== undefined) url.searchParams.set('since', this.#cursor);
    const response = await this.#options.fetch(url, {
      headers: { accept: 'text/event-stream' },
      signal: this.#abort.signal,
      redirect: 'error',
    });
    if (!response.ok || !response.body) throw new Error(`revocation feed answered ${response.status}`);
    const parser = createParser({
      onEvent: (message) => {
        this.#touch();
        if (message.event !== 'revoked') return;
        try {
          const data = JSON.parse(message.data) as { session_id?: unknown; remember_until?: unknown };
          if (typeof data.session_id !== 'string' || typeof data.remember_until !== 'string') return;
          this.#revoked.set(data.session_id, Date.parse(data.remember_until));
          if (message.id) this.#cursor = message.id;
        } catch {
          // A malformed event is skipped; the stream goes on.
        }
      },
    });
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    this.#touch();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.feed(value);
      this.#prune();
    }
  }

  #touch(): void {
    this.#lastContact = this.#options.now();
    this.#resolveConnected();
  }

  #prune(): void {
    if (this.#revoked.size < 10_000) return;
    const now = this.#options.now();
    for (const [id, until] of this.#revoked) if (until <= now) this.#revoked.delete(id);
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    (timer as { unref?: () => void }).unref?.();
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    }, { once: true });
  });
}
