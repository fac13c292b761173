import type { DpopReplayCache } from '@tessera/verify';
import type { Logger } from 'pino';
import type { ServerConfig } from '../config.js';
import type { KeyRing } from '../keys/key_ring.js';
import type { Metrics } from '../lib/metrics.js';
import type { Limiter } from '../lib/rate_limiter.js';
import type { Mailer } from '../mail/mailer.js';
import type { Store } from '../store/store.js';
import type { DpopNonces } from './dpop_nonces.js';
import type { RevocationHub } from './revocation_hub.js';

/**
 * What the account flows need (users, roles, reset links): the HTTP routes, the
 * admin API and the operators' admin socket run the same flows on it, and the CLI
 * builds one straight on the database when no server holds it.
 */
export interface AccountsContext {
  readonly store: Store;
  /** Milliseconds since the epoch, from the injected clock. */
  now(): number;
  /** Sends account mail; undefined without `--smtp-url` (mail routes answer `not_configured`). */
  readonly mailer: Mailer | undefined;
  /** Where the web app is reached: links in mail point there. */
  publicUrl(): string;
}

/** Everything a flow needs; built once per server by `createAuthServer`. */
export interface AuthContext extends AccountsContext {
  readonly config: Readonly<ServerConfig>;
  readonly keys: KeyRing;
  /** `iss` of tokens: known once the server listens (port 0 picks the port late). */
  issuer(): string;
  /** Verified against for unknown users, so their timing matches a wrong password. */
  readonly dummyHash: string;
  readonly limits: {
    readonly ip: Limiter;
    /** Failed password attempts per (account, address). */
    readonly user: Limiter;
    /** Failed password attempts per account from all addresses. */
    readonly userGlobal: Limiter;
    /** Account mail (reset, verification) per account: nobody's inbox can be flooded. */
    readonly mail: Limiter;
    /** True once per key and window: whether a refusal should be written to the audit log. */
    reported(key: string, now: number): boolean;
  };
  readonly log: Logger;
  /** DPoP proof ids already seen (shared through Redis when configured). */
  readonly dpopReplay: DpopReplayCache;
  /** With `dpopNonce`: the nonces proofs must carry (RFC 9449 §8); undefined without. */
  readonly dpopNonces: DpopNonces | undefined;
  /** Pushes revocations to the feed's subscribers. */
  readonly revocations: RevocationHub;
  readonly metrics: Metrics;
  /** Tells the other instances (through Redis, when configured) that the key ring changed. */
  announceKeysChanged(): void;
}
