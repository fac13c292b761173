import { createHmac } from 'node:crypto';

/** How long one nonce is handed out; a proof may carry it for one window more. */
export const DPOP_NONCE_WINDOW_MS = 5 * 60_000;

/**
 * Server-provided DPoP nonces (RFC 9449 §8): with them, a proof made in advance (by
 * code that ran once with the client's key, then left) is worthless, because its
 * nonce will have expired. Stateless: a nonce is an HMAC of the current window under
 * a secret every instance shares (from the database), so any instance accepts what
 * any other handed out, without a round trip.
 */
export class DpopNonces {
  readonly #secret: Buffer;
  readonly #now: () => number;
  #cached: { window: number; nonce: string } | undefined;

  constructor(secret: Buffer, now: () => number) {
    this.#secret = secret;
    this.#now = now;
  }

  /** The nonce to send now (`DPoP-Nonce`). */
  current(): string {
    return this.#forWindow(this.#window());
  }

  /** The nonces a proof may carry now: this window's and the previous one's. */
  accepted(): [string, string] {
    const window = this.#window();
    return [this.#forWindow(window), this.#forWindow(window - 1)];
  }

  #window(): number {
    return Math.floor(this.#now() / DPOP_NONCE_WINDOW_MS);
  }

  #forWindow(window: number): string {
    if (this.#cached?.window === window) return this.#cached.nonce;
    const nonce = createHmac('sha256', this.#secret).update(`dpop-nonce:${window}`).digest('base64url').slice(0, 32);
    if (window === this.#window()) this.#cached = { window, nonce };
    return nonce;
  }
}
