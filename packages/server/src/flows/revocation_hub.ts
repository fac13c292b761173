import { TesseraError } from '@tessera/protocol';
import type { Logger } from 'pino';
import type { FeedRow, Store } from '../store/store.js';

/** One revoked session as the feed tells it: verifiers remember it until `rememberUntil`. */
export interface Revocation {
  /** Its place in commit order (see migration 5). */
  position: number;
  sessionId: string;
  revokedAt: Date;
  /** After this, every access token of the session has expired anyway. */
  rememberUntil: Date;
  /** Its SSE event, written once and shared by every stream. */
  event?: string;
}

/** A page of the feed: at most a page size of revocations after a cursor, oldest first. */
export interface FeedSlice {
  revocations: Revocation[];
  /** Where the next page starts: every revocation up to here has been given (or had expired). */
  after: number;
  /** Whether more revocations were already there past this page. */
  more: boolean;
}

export interface RevocationHubOptions {
  store: Store;
  /** Access token lifetime in seconds: how long a revocation matters. */
  accessTtl: number;
  now: () => number;
  log?: Logger;
  /** How often to read the database for revocations another instance made, in ms (the backstop when Redis is down). Default 1000. */
  pollIntervalMs?: number;
  /** Revocations per page of the feed. Default 1000. */
  pageSize?: number;
  /** Recent revocations kept in memory, so subscribers and paging clients that are up to date cost no query. Default 50,000. */
  tailSize?: number;
}

export const FEED_PAGE_SIZE = 1000;

/** How long a computed horizon start is reused (it only moves forward, so an older value is a safe lower bound). */
const START_CACHE_MS = 10_000;

/**
 * The instance's view of the revocation feed. Revocations are numbered in commit
 * order by the database (migration 5), so "everything after position N" is exact:
 * a reader that pages until it is up to date sees every revocation once, however
 * many share a millisecond and however many instances made them.
 *
 * The hub follows the database's numbering: woken right after a local revocation
 * commits or when Redis says another instance made one, and every poll interval in
 * any case. It keeps the most recent revocations in memory, so the common request
 * (a verifier that is up to date, or nearly) and every open stream are served
 * without a query; readers further behind page from the database.
 */
export class RevocationHub {
  readonly #options: Required<Omit<RevocationHubOptions, 'log'>> & { log: Logger | undefined };
  #epoch: string;
  /** The highest position read from the database: every revocation up to it is in the tail or older. */
  #head: number;
  /** Revocations after `#tailAfter` up to `#head`, in order (those within the horizon when read). */
  #tail: Revocation[] = [];
  #tailAfter: number;
  readonly #listeners = new Set<() => void>();
  #timer: ReturnType<typeof setInterval> | undefined;
  #reading: Promise<void> | undefined;
  #readAgain = false;
  #start: { value: number; at: number } | undefined;
  #failing = false;
  /** The last row read (position, session id): if the database no longer has it, it went back in time. */
  #anchor: { position: number; sessionId: string } | undefined;
  /** When the database last answered a read (monotonic ms). */
  #lastRead = performance.now();
  readonly #resetListeners = new Set<() => void>();

  private constructor(options: RevocationHubOptions, epoch: string, head: number) {
    this.#options = { pollIntervalMs: 1000, pageSize: FEED_PAGE_SIZE, tailSize: 50_000, ...options, log: options.log };
    this.#epoch = epoch;
    this.#head = head;
    this.#tailAfter = head;
  }

  /** Reads where the feed stands and starts following it. */
  static async open(options: RevocationHubOptions): Promise<RevocationHub> {
    const { epoch, head } = await options.store.feed.head();
    const hub = new RevocationHub(options, epoch, head);
    // The row at the head anchors the check that the database never goes back in time.
    const last = (await options.store.feed.read(Math.max(0, head - 1), new Date(0), 1)).rows[0];
    if (last && last.position === head) hub.#anchor = { position: last.position, sessionId: last.sessionId };
    hub.#timer = setInterval(() => hub.wake(), hub.#options.pollIntervalMs);
    hub.#timer.unref();
    return hub;
  }

  get pageSize(): number {
    return this.#options.pageSize;
  }

  /** The last position this instance has read. */
  get head(): number {
    return this.#head;
  }

  /** Reads new revocations from the database now (after a local commit, or a word from another instance). */
  wake(): void {
    if (this.#reading) {
      this.#readAgain = true;
      return;
    }
    this.#reading = this.#read().finally(() => {
      this.#reading = undefined;
    });
  }

  /** Resolves once the revocations committed before this call have been read (tests, and a feed request that must not lag). */
  async sync(): Promise<void> {
    if (this.#reading) {
      this.#readAgain = true;
      await this.#reading;
    }
    this.wake();
    await this.#reading;
  }

  /**
   * Whether this instance has read the database lately (within three poll intervals).
   * An instance cut off from it must not tell verifiers they are up to date: its
   * heartbeats stop and its JSON answers 503, so they go stale and fail closed.
   */
  get fresh(): boolean {
    return performance.now() - this.#lastRead < Math.max(3000, 3 * this.#options.pollIntervalMs);
  }

  /** Calls `listener` when the feed starts over under a new epoch (the database went back in time). */
  onReset(listener: () => void): () => void {
    this.#resetListeners.add(listener);
    return () => this.#resetListeners.delete(listener);
  }

  /** Calls `listener` each time the head moves; returns the unsubscribe function. */
  subscribe(listener: () => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The opaque cursor of a position: this database's epoch and the position. */
  cursor(position: number): string {
    return `${this.#epoch}.${position}`;
  }

  /**
   * Turns a client's cursor into a position; `undefined` (no cursor) starts at the
   * horizon. Malformed, foreign (another database) and impossible (past the head)
   * cursors are `invalid_request`.
   */
  async parseCursor(text: string | undefined): Promise<number> {
    if (text === undefined || text === '') return 0;
    // The cursor before migration 5 was a time in ms. Verifiers still holding one
    // start again from the horizon (they are told each revocation once more); a time
    // in the future was never a cursor.
    if (/^[0-9]{1,15}$/.test(text) && Number(text) <= this.#options.now()) return 0;
    const match = /^([0-9a-f]{12})\.([0-9]{1,15})$/.exec(text);
    if (!match) throw new TesseraError('invalid_request', 'The cursor is malformed: pass back the cursor of a previous answer.');
    if (match[1] !== this.#epoch) {
      throw new TesseraError('invalid_request', 'The cursor belongs to another database: start again without one.');
    }
    const position = Number(match[2]);
    if (position > this.#head) {
      // Another instance may be ahead of this one: only the database can say.
      const { head } = await this.#options.store.feed.head();
      if (position > head) throw new TesseraError('invalid_request', 'The cursor is ahead of the feed: start again without one.');
    }
    return position;
  }

  /** The revocations after `after`, at most `limit` (the page size by default), oldest first. */
  async page(after: number, limit = this.#options.pageSize): Promise<FeedSlice> {
    // A revocation committed here wakes a read at once: a page asked for meanwhile (the
    // logout's own client, a verifier told by Redis) waits for it, briefly, so that a
    // logout answered 204 is in this instance's feed.
    if (this.#reading) await settledWithin(this.#reading, READ_WAIT_MS);
    const now = this.#options.now();
    if (after >= this.#tailAfter && after <= this.#head) return this.#fromTail(after, limit, now);
    const horizon = new Date(now - this.#options.accessTtl * 1000);
    const from = Math.max(after, (await this.#horizonStart(horizon, now)) - 1);
    const page = await this.#options.store.feed.read(from, horizon, limit);
    const revocations = page.rows.map((row) => this.#revocation(row));
    return {
      revocations,
      // The last page: everything up to the snapshot's head was there to be read.
      after: page.more ? revocations.at(-1)!.position : Math.max(from, page.head),
      more: page.more,
    };
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#listeners.clear();
  }

  #fromTail(after: number, limit: number, now: number): FeedSlice {
    const tail = this.#tail;
    let i = firstAfter(tail, after);
    const revocations: Revocation[] = [];
    for (; i < tail.length && revocations.length < limit; i++) {
      if (tail[i]!.rememberUntil.getTime() > now) revocations.push(tail[i]!);
    }
    const more = i < tail.length;
    return { revocations, after: more ? tail[i - 1]!.position : this.#head, more };
  }

  async #read(): Promise<void> {
    try {
      do {
        this.#readAgain = false;
        const before = this.#head;
        for (;;) {
          const horizon = new Date(this.#options.now() - this.#options.accessTtl * 1000);
          const anchor = this.#anchor;
          const page = await this.#options.store.feed.read(this.#head, horizon, this.#options.pageSize, anchor?.position ?? 0);
          this.#lastRead = performance.now();
          if (page.epoch !== this.#epoch || page.head < this.#head || (anchor && page.anchor !== anchor.sessionId)) {
            await this.#startOver(page.epoch);
            return;
          }
          for (const row of page.rows) this.#tail.push(this.#revocation(row));
          const last = page.rows.at(-1);
          if (last) this.#anchor = { position: last.position, sessionId: last.sessionId };
          this.#head = page.more ? last!.position : Math.max(this.#head, page.head);
          if (!page.more) break;
        }
        this.#trim();
        if (this.#head !== before) for (const listener of this.#listeners) listener();
      } while (this.#readAgain);
      if (this.#failing) this.#options.log?.info('revocation feed: reading the database again');
      this.#failing = false;
    } catch (error) {
      // The database is down: the next poll tries again, and readers see no new rows
      // meanwhile (nor can anyone revoke). Said once per outage, not every second.
      if (!this.#failing) this.#options.log?.warn({ err: error }, 'revocation feed: reading new revocations failed');
      this.#failing = true;
    }
  }

  /**
   * The database went back in time (its head is below ours, the last row we read is
   * gone, or another instance already noticed and changed the epoch): the positions
   * after its head will be handed out again, to other revocations. Give the feed a
   * new epoch, so every cursor out there is refused and its reader starts over, and
   * start over here too.
   */
  async #startOver(seen: string): Promise<void> {
    if (seen === this.#epoch) await this.#options.store.feed.renewEpoch(this.#epoch);
    const { epoch, head } = await this.#options.store.feed.head();
    this.#options.log?.warn({ from: this.#epoch, to: epoch }, 'revocation feed: the database went back in time; the feed starts over under a new epoch');
    this.#epoch = epoch;
    this.#head = head;
    this.#tail = [];
    this.#tailAfter = head;
    this.#anchor = undefined;
    this.#start = undefined;
    for (const listener of this.#resetListeners) listener();
  }

  /** Keeps the tail within its size and drops what has left the horizon. */
  #trim(): void {
    const now = this.#options.now();
    let drop = Math.max(0, this.#tail.length - this.#options.tailSize);
    while (drop < this.#tail.length && this.#tail[drop]!.rememberUntil.getTime() <= now) drop++;
    if (drop === 0) return;
    this.#tailAfter = this.#tail[drop - 1]!.position;
    this.#tail = this.#tail.slice(drop);
  }

  async #horizonStart(horizon: Date, now: number): Promise<number> {
    if (this.#start && now - this.#start.at < START_CACHE_MS) return this.#start.value;
    const value = (await this.#options.store.feed.start(horizon)) ?? this.#head + 1;
    this.#start = { value, at: now };
    return value;
  }

  #revocation(row: FeedRow): Revocation {
    return {
      position: row.position,
      sessionId: row.sessionId,
      revokedAt: row.revokedAt,
      rememberUntil: new Date(row.revokedAt.getTime() + this.#options.accessTtl * 1000),
    };
  }
}

/** Index of the first entry with a position above `after` (entries are in position order). */
function firstAfter(entries: Revocation[], after: number): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (entries[mid]!.position <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** How long a feed request waits for a read in flight before answering from what it has. */
const READ_WAIT_MS = 250;

function settledWithin(promise: Promise<unknown>, ms: number): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, ms);
    const done = () => {
      clearTimeout(timer);
      resolve();
    };
    promise.then(done, done);
  });
}
