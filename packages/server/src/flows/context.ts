import type { Logger } from 'pino';
import type { ServerConfig } from '../config.js';
import type { KeyRing } from '../keys/key_ring.js';
import type { Metrics } from '../lib/metrics.js';
import type { Limiter } from '../lib/rate_limiter.js';
import type { Store } from '../store/store.js';
import type { RevocationHub } from './revocation_hub.js';

/** Everything a flow needs; built once per server by `createAuthServer`. */
export interface AuthContext {
  readonly config: Readonly<ServerConfig>;
  readonly store: Store;
  readonly keys: KeyRing;
  /** `iss` of tokens: known once the server listens (port 0 picks the port late). */
  issuer(): string;
  /** Milliseconds since the epoch, from the injected clock. */
  now(): number;
  /** Verified against for unknown users, so their timing matches a wrong password. */
  readonly dummyHash: string;
  readonly limits: {
    readonly ip: Limiter;
    /** Failed password attempts per (account, address). */
    readonly user: Limiter;
    /** Failed password attempts per account from all addresses. */
    readonly userGlobal: Limiter;
    /** True once per key and window: whether a refusal should be written to the audit log. */
    reported(key: string, now: number): boolean;
  };
  readonly log: Logger;
  /** Pushes revocations to the feed's subscribers. */
  readonly revocations: RevocationHub;
  readonly metrics: Metrics;
  /** Tells the other instances (through Redis, when configured) that the key ring changed. */
  announceKeysChanged(): void;
}
