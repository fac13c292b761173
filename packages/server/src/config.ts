import { isAbsolute, resolve } from 'node:path';
import { SIGNING_ALGORITHMS, type SigningAlgorithm } from '@tessera/protocol';
import { parseKeyEncryptionKey } from './keys/key_encryption.js';
import { type Clock, systemClock } from './lib/clock.js';
import { parseDuration } from './lib/duration.js';
import { validateMailFrom, validateSmtpUrl } from './mail/mailer.js';

/** A data directory of `memory://` keeps everything in memory: gone when the process ends. */
export const MEMORY_DATA_DIR = 'memory://';

/** A limit of `max` attempts per `windowSeconds`. */
export interface RateLimit {
  max: number;
  windowSeconds: number;
}

/** Options of one auth server. Every field has a default (see `DEFAULTS`). */
export interface ServerOptions {
  /** Listen port; 0 picks a free one. Default 4000. */
  port?: number;
  /** Listen address. Default `127.0.0.1`. */
  host?: string;
  /** Embedded database and generated keys. Default `./.tessera`. */
  dataDir?: string;
  /** `postgres://…`: a real PostgreSQL instead of the embedded one. */
  databaseUrl?: string;
  /** Connections in the PostgreSQL pool. Default 10. */
  databasePoolSize?: number;
  /** `redis://…`: shared rate limits, revocations pushed to every instance, key-ring reloads. */
  redisUrl?: string;
  /** `iss` of every token. Default `http://localhost:<port>`. */
  issuer?: string;
  /** `aud` of access tokens. Default `tessera-api`. Never the issuer (that is the refresh token's audience). */
  audience?: string;
  /** `client_id` of access tokens (RFC 9068). Default `tessera`. */
  clientId?: string;
  /** Signing algorithm of new keys. Default `RS256`. */
  alg?: SigningAlgorithm;
  /** Access token lifetime: seconds or `15m` style. Default 15 minutes. */
  accessTtl?: number | string;
  /** Refresh token (session) lifetime: seconds or `30d` style. Default 30 days. */
  refreshTtl?: number | string;
  /** How long a just-rotated refresh token may be presented again. Default 10 s. */
  reuseGrace?: number | string;
  /** `single`: a new login ends the user's other sessions. Default `multiple`. */
  sessionPolicy?: 'multiple' | 'single';
  /** `closed`: only operators create users. Default `open`. */
  signup?: 'open' | 'closed';
  /** PEM (PKCS#8) file to sign with instead of the key ring. */
  privateKeyFile?: string;
  /** `ip=100/1m,user=10/15m` or parsed limits. Cannot be turned off. */
  rateLimit?: string | { ip: RateLimit; user: RateLimit };
  /** Trust `X-Forwarded-*`: `true` for any proxy, or a comma list of proxy addresses/CIDRs. Default false. */
  trustProxy?: boolean | string;
  /** Logging: `false` silences it, a level name sets it. Default `info`. */
  log?: false | 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
  /**
   * Seconds verifiers may cache the JWKS (its `Cache-Control: max-age`). A rotated-in
   * key signs only after this long, so no verifier meets an unknown `kid`. Default 300.
   */
  jwksMaxAge?: number;
  /** 32 random bytes (base64) to encrypt private keys at rest. Env twin `TESSERA_KEY_ENCRYPTION_KEY`. */
  keyEncryptionKey?: string;
  /** Seconds between key-ring reloads from the database (rotations by the CLI or other instances). Default 10. */
  keyReloadInterval?: number;
  /**
   * How long the audit log and ended sessions are kept: `90d` style, or `forever`.
   * Older rows are deleted hourly. At least a day, and longer than `accessTtl` (the
   * revocation feed lists a revoked session until its access tokens have expired).
   * Default 90 days.
   */
  retention?: number | string;
  /** Seconds between heartbeat events on the revocation feed. Default 10. */
  feedHeartbeat?: number;
  /**
   * When set, the revocation feed answers only `Authorization: Bearer <feedSecret>`
   * (at least 16 characters). Env twin `TESSERA_FEED_SECRET`.
   */
  feedSecret?: string;
  /**
   * `GET /metrics` answers `Authorization: Bearer <metricsToken>` from anywhere; without
   * one, it answers loopback clients only. At least 16 characters. Env twin `TESSERA_METRICS_TOKEN`.
   */
  metricsToken?: string;
  /**
   * Server-provided DPoP nonces (RFC 9449 §8): every response carries `DPoP-Nonce`, and
   * a proof without a current one is refused with `use_dpop_nonce` (the client retries
   * once). Costs a bound client one extra round trip when its nonce has gone stale
   * (every 5 to 10 minutes). Default false. Env twin `TESSERA_DPOP_NONCE=on`.
   */
  dpopNonce?: boolean;
  /** Open revocation streams per client address (IPv6 by /64). Default 32. */
  feedStreamsPerAddress?: number;
  /** Open revocation streams on this instance. Default: 64 MiB of stream memory, 4,096 streams (see README). */
  feedMaxStreams?: number;
  /** A revocation stream whose socket takes nothing for this long is dropped, in ms. Default 15,000. */
  feedSlowConsumerMs?: number;
  /** Seconds between database polls for revocations made by other instances (the backstop when Redis is down). Default 1. */
  revocationPoll?: number;
  /** A built web app (apps/web/dist) to serve at `/`. Default none. */
  webRoot?: string;
  /**
   * `smtp://user:pass@host:port` (STARTTLS when offered) or `smtps://…` (implicit TLS)
   * for password-reset and verification mail. Without it the mail routes answer
   * `503 not_configured`. Env twin `TESSERA_SMTP_URL`.
   */
  smtpUrl?: string;
  /** PEM of a certificate authority to trust for the SMTP server (a private CA), besides the system's. */
  smtpCa?: string;
  /** The sender of account mail. Default `Tessera <no-reply@localhost>`. */
  mailFrom?: string;
  /** Where the web app is reached; links in mail point there. Default the issuer. */
  publicUrl?: string;
  /** Account mails (reset and verification links) per account and hour. Default 5. */
  mailPerHour?: number;
  /** Where log lines go. Default stdout. */
  logStream?: NodeJS.WritableStream;
  /** Time source in ms; tests inject one. */
  clock?: Clock;
}

/** Options after validation: every value present, durations in seconds. */
export interface ServerConfig {
  port: number;
  host: string;
  dataDir: string;
  databaseUrl: string | undefined;
  databasePoolSize: number;
  redisUrl: string | undefined;
  issuer: string | undefined;
  audience: string;
  clientId: string;
  alg: SigningAlgorithm;
  accessTtl: number;
  refreshTtl: number;
  reuseGrace: number;
  sessionPolicy: 'multiple' | 'single';
  signup: 'open' | 'closed';
  privateKeyFile: string | undefined;
  rateLimit: { ip: RateLimit; user: RateLimit };
  trustProxy: boolean | string;
  log: ServerOptions['log'];
  logStream: NodeJS.WritableStream | undefined;
  feedHeartbeat: number;
  feedSecret: string | undefined;
  metricsToken: string | undefined;
  dpopNonce: boolean;
  feedStreamsPerAddress: number;
  feedMaxStreams: number;
  feedSlowConsumerMs: number;
  webRoot: string | undefined;
  smtpUrl: string | undefined;
  smtpCa: string | undefined;
  mailFrom: string;
  publicUrl: string | undefined;
  mailPerHour: number;
  revocationPoll: number;
  jwksMaxAge: number;
  keyEncryptionKey: Uint8Array | undefined;
  keyReloadInterval: number;
  /** Seconds; 0 = forever. */
  retention: number;
  clock: Clock;
}

export const DEFAULTS = {
  port: 4000,
  host: '127.0.0.1',
  dataDir: './.tessera',
  databasePoolSize: 10,
  audience: 'tessera-api',
  clientId: 'tessera',
  alg: 'RS256',
  accessTtl: '15m',
  refreshTtl: '30d',
  reuseGrace: '10s',
  sessionPolicy: 'multiple',
  signup: 'open',
  rateLimit: 'ip=100/1m,user=10/15m',
  log: 'info',
  retention: '90d',
  feedStreamsPerAddress: 32,
  feedMaxStreams: 4096,
  mailFrom: 'Tessera <no-reply@localhost>',
  mailPerHour: 5,
  jwksMaxAge: 300,
  dpopNonce: false,
} as const;

/**
 * Validates options once, naming the bad one, and returns a frozen config.
 * @throws TypeError for an option that cannot be right.
 */
export function resolveConfig(options: ServerOptions = {}): Readonly<ServerConfig> {
  const port = options.port ?? DEFAULTS.port;
  if (!Number.isInteger(port) || port < 0 || port > 65_535) throw new TypeError(`port: expected 0..65535, got ${port}`);
  const alg = options.alg ?? DEFAULTS.alg;
  if (!SIGNING_ALGORITHMS.includes(alg)) {
    throw new TypeError(`alg: expected one of ${SIGNING_ALGORITHMS.join(', ')}, got ${String(alg)}`);
  }
  const accessTtl = duration('accessTtl', options.accessTtl ?? DEFAULTS.accessTtl, 1);
  const refreshTtl = duration('refreshTtl', options.refreshTtl ?? DEFAULTS.refreshTtl, 1);
  const retentionOption = options.retention ?? DEFAULTS.retention;
  const retention = retentionOption === 'forever' ? 0 : duration('retention', retentionOption, 86_400);
  if (retention !== 0 && retention <= accessTtl) throw new TypeError('retention: must be longer than accessTtl');
  const reuseGrace = duration('reuseGrace', options.reuseGrace ?? DEFAULTS.reuseGrace, 0);
  if (refreshTtl <= accessTtl) throw new TypeError('refreshTtl: must be longer than accessTtl');
  if (reuseGrace > 300) throw new TypeError('reuseGrace: at most 5m (a longer window lets a thief replay)');
  const sessionPolicy = options.sessionPolicy ?? DEFAULTS.sessionPolicy;
  if (sessionPolicy !== 'multiple' && sessionPolicy !== 'single') {
    throw new TypeError(`sessionPolicy: expected multiple or single, got ${String(sessionPolicy)}`);
  }
  const signup = options.signup ?? DEFAULTS.signup;
  if (signup !== 'open' && signup !== 'closed') throw new TypeError(`signup: expected open or closed, got ${String(signup)}`);
  const issuer = options.issuer;
  if (issuer !== undefined) {
    let url: URL;
    try {
      url = new URL(issuer);
    } catch {
      throw new TypeError(`issuer: expected an absolute http(s) URL, got ${issuer}`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError('issuer: expected an http(s) URL');
  }
  const audience = options.audience ?? DEFAULTS.audience;
  if (audience.length === 0) throw new TypeError('audience: must not be empty');
  // A refresh token's aud is the issuer: were the access audience the same, a library
  // that does not check typ (PyJWT, Authlib) would take a refresh token for an access token.
  const knownIssuer = issuer ?? (port === 0 ? undefined : `http://localhost:${port}`);
  if (knownIssuer !== undefined && sameUrl(audience, knownIssuer)) {
    throw new TypeError('audience: must differ from the issuer (the issuer is the audience of refresh tokens)');
  }
  const clientId = options.clientId ?? DEFAULTS.clientId;
  if (!/^[\x21-\x7e]{1,200}$/.test(clientId)) throw new TypeError('clientId: expected 1..200 printable characters without spaces');
  const databaseUrl = options.databaseUrl || undefined;
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) {
    throw new TypeError('databaseUrl: expected postgres://… or postgresql://…');
  }
  const dataDir = options.dataDir ?? DEFAULTS.dataDir;
  const rateLimit =
    typeof options.rateLimit === 'object' ? options.rateLimit : parseRateLimit(options.rateLimit ?? DEFAULTS.rateLimit);
  const databasePoolSize = options.databasePoolSize ?? DEFAULTS.databasePoolSize;
  const feedSecret = options.feedSecret || undefined;
  if (feedSecret !== undefined && (feedSecret.length < 16 || !/^[\x21-\x7e]+$/.test(feedSecret))) {
    throw new TypeError('feedSecret: expected at least 16 printable characters without spaces (openssl rand -base64 32)');
  }
  const metricsToken = options.metricsToken || undefined;
  if (metricsToken !== undefined && (metricsToken.length < 16 || !/^[\x21-\x7e]+$/.test(metricsToken))) {
    throw new TypeError('metricsToken: expected at least 16 printable characters without spaces (openssl rand -base64 32)');
  }
  if (!Number.isInteger(databasePoolSize) || databasePoolSize < 1) throw new TypeError('databasePoolSize: expected a positive integer');
  const smtpUrl = options.smtpUrl || undefined;
  if (smtpUrl !== undefined) validateSmtpUrl(smtpUrl);
  const publicUrl = options.publicUrl || undefined;
  if (publicUrl !== undefined) {
    let url: URL | undefined;
    try {
      url = new URL(publicUrl);
    } catch {}
    if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:') || url.search || url.hash || url.username) {
      throw new TypeError(`publicUrl: expected an absolute http(s) URL without query or fragment, got ${publicUrl}`);
    }
  }
  const mailFrom = options.mailFrom || DEFAULTS.mailFrom;
  validateMailFrom(mailFrom);
  return Object.freeze({
    port,
    host: options.host ?? DEFAULTS.host,
    dataDir: dataDir === MEMORY_DATA_DIR || isAbsolute(dataDir) ? dataDir : resolve(dataDir),
    databaseUrl,
    databasePoolSize,
    redisUrl: options.redisUrl || undefined,
    issuer: issuer?.replace(/\/+$/, ''),
    audience,
    clientId,
    alg,
    accessTtl,
    refreshTtl,
    reuseGrace,
    sessionPolicy,
    signup,
    privateKeyFile: options.privateKeyFile || undefined,
    rateLimit,
    trustProxy: options.trustProxy ?? false,
    log: options.log ?? DEFAULTS.log,
    logStream: options.logStream,
    feedHeartbeat: options.feedHeartbeat ?? 10,
    feedSecret,
    metricsToken,
    dpopNonce: options.dpopNonce ?? DEFAULTS.dpopNonce,
    feedStreamsPerAddress: positiveInt('feedStreamsPerAddress', options.feedStreamsPerAddress ?? DEFAULTS.feedStreamsPerAddress),
    feedMaxStreams: positiveInt('feedMaxStreams', options.feedMaxStreams ?? DEFAULTS.feedMaxStreams),
    feedSlowConsumerMs: positiveInt('feedSlowConsumerMs', options.feedSlowConsumerMs ?? 15_000),
    webRoot: options.webRoot,
    smtpUrl,
    smtpCa: options.smtpCa || undefined,
    mailFrom,
    publicUrl: publicUrl?.replace(/\/+$/, ''),
    mailPerHour: positiveInt('mailPerHour', options.mailPerHour ?? DEFAULTS.mailPerHour),
    revocationPoll: nonNegative('revocationPoll', options.revocationPoll ?? 1),
    jwksMaxAge: nonNegative('jwksMaxAge', options.jwksMaxAge ?? DEFAULTS.jwksMaxAge),
    keyEncryptionKey: options.keyEncryptionKey ? parseKeyEncryptionKey(options.keyEncryptionKey) : undefined,
    keyReloadInterval: nonNegative('keyReloadInterval', options.keyReloadInterval ?? 10),
    retention,
    clock: options.clock ?? systemClock,
  });
}

/** Whether two URLs name the same thing, trailing slashes aside. */
export function sameUrl(a: string, b: string): boolean {
  return a.replace(/\/+$/, '') === b.replace(/\/+$/, '');
}

function positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new TypeError(`${name}: expected a whole number >= 1, got ${value}`);
  return value;
}

function nonNegative(name: string, value: number): number {
  if (!Number.isFinite(value) || value < 0) throw new TypeError(`${name}: expected a number of seconds >= 0, got ${value}`);
  return value;
}

function duration(name: string, value: number | string, min: number): number {
  const seconds = typeof value === 'number' ? value : parseDuration(value);
  if (seconds === undefined || !Number.isInteger(seconds)) {
    throw new TypeError(`${name}: expected a duration like 30s, 15m, 1h or 7d, got ${String(value)}`);
  }
  if (seconds < min) throw new TypeError(`${name}: must be at least ${min} s, got ${String(value)}`);
  return seconds;
}

/** Parses `ip=100/1m,user=10/15m`. Both parts are required: no limit can be switched off. */
export function parseRateLimit(text: string): { ip: RateLimit; user: RateLimit } {
  const parts = new Map<string, RateLimit>();
  for (const part of text.split(',')) {
    const match = /^\s*(ip|user)=(\d+)\/(\w+)\s*$/.exec(part);
    const windowSeconds = match ? parseDuration(match[3]!) : undefined;
    if (!match || windowSeconds === undefined || windowSeconds < 1 || Number(match[2]) < 1) {
      throw new TypeError(`rateLimit: expected ip=N/window,user=N/window (like ip=100/1m,user=10/15m), got ${text}`);
    }
    parts.set(match[1]!, { max: Number(match[2]), windowSeconds });
  }
  const ip = parts.get('ip');
  const user = parts.get('user');
  if (!ip || !user) throw new TypeError('rateLimit: both ip= and user= limits are required');
  return { ip, user };
}
