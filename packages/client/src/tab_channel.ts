/** A message between tabs of one origin. Never a refresh token (cookie mode keeps it out of reach). */
export type TabMessage = { type: 'logout' } | { type: 'refreshed'; accessToken: string; expiresIn: number };

/**
 * Browser tabs of one app, coordinated: a Web Lock makes one tab refresh while
 * the others wait, and a BroadcastChannel hands them its result (and logouts).
 * Outside a browser (Node) there are no tabs, and `open` returns undefined.
 */
export class TabChannel {
  readonly #channel: BroadcastChannel;
  readonly #locks: LockManager | undefined;

  private constructor(name: string) {
    this.#channel = new BroadcastChannel(name);
    this.#locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
  }

  static open(name: string): TabChannel | undefined {
    if (typeof document === 'undefined' || typeof BroadcastChannel === 'undefined') return undefined;
    return new TabChannel(name);
  }

  post(message: TabMessage): void {
    this.#channel.postMessage(message);
  }

  listen(handler: (message: Partial<TabMessage> & { type?: string; accessToken?: unknown; expiresIn?: unknown }) => void): void {
    this.#channel.addEventListener('message', (event: MessageEvent) => {
      if (event.data && typeof event.data === 'object') handler(event.data);
    });
  }

  /** Runs `fn` holding the named lock across tabs (or directly where Web Locks are missing). */
  withLock<T>(name: string, fn: () => Promise<T>): Promise<T> {
    return this.#locks ? (this.#locks.request(name, fn) as Promise<T>) : fn();
  }

  close(): void {
    this.#channel.close();
  }
}
