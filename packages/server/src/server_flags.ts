import { DEFAULTS, type ServerOptions } from './config.js';

/**
 * How `tessera serve` reads an option: a string, a whole number, one of a list, `on`/`off`,
 * or by the CLI's own rule (`custom`: a file to read, a word that means "none").
 */
export type ServerFlagValue = 'string' | 'int' | 'on-off' | 'custom' | readonly string[];

export interface ServerFlag {
  /** The `ServerOptions` member the flag sets. */
  option: keyof ServerOptions;
  /** Its environment twin (the flag wins). */
  env: string;
  value: ServerFlagValue;
  help: string;
  /** The default as the help shows it: the value in `DEFAULTS` where there is one. */
  default: string;
}

/**
 * Every option an operator sets, declared once: its flag, environment variable, help
 * text and the default shown, which comes from `DEFAULTS`. `tessera serve` builds its
 * parser, its `--help` and the options it passes from this table.
 */
export const SERVER_FLAGS = {
  port: { option: 'port', env: 'PORT', value: 'int', help: 'listen port (0 = any free port)', default: String(DEFAULTS.port) },
  host: { option: 'host', env: 'HOST', value: 'string', help: 'listen address', default: DEFAULTS.host },
  'data-dir': { option: 'dataDir', env: 'TESSERA_DATA_DIR', value: 'string', help: 'embedded database and generated keys ("memory://": in memory only)', default: DEFAULTS.dataDir },
  'database-url': { option: 'databaseUrl', env: 'DATABASE_URL', value: 'string', help: 'postgres://… to use a real PostgreSQL instead', default: '(embedded)' },
  'database-pool-size': { option: 'databasePoolSize', env: 'TESSERA_DATABASE_POOL_SIZE', value: 'int', help: 'PostgreSQL connections', default: String(DEFAULTS.databasePoolSize) },
  'redis-url': { option: 'redisUrl', env: 'REDIS_URL', value: 'string', help: 'shared rate limits, instant revocation and key fan-out across instances', default: '(none)' },
  issuer: { option: 'issuer', env: 'TESSERA_ISSUER', value: 'string', help: 'iss of every token', default: 'http://localhost:<port>' },
  audience: { option: 'audience', env: 'TESSERA_AUDIENCE', value: 'string', help: 'aud of access tokens (never the issuer)', default: DEFAULTS.audience },
  'client-id': { option: 'clientId', env: 'TESSERA_CLIENT_ID', value: 'string', help: 'client_id of access tokens (RFC 9068)', default: DEFAULTS.clientId },
  alg: { option: 'alg', env: 'TESSERA_ALG', value: ['RS256', 'PS256', 'ES256', 'EdDSA'], help: 'RS256, PS256, ES256 or EdDSA', default: DEFAULTS.alg },
  'access-ttl': { option: 'accessTtl', env: 'TESSERA_ACCESS_TTL', value: 'string', help: 'access token lifetime (30s, 15m, 1h, 7d)', default: DEFAULTS.accessTtl },
  'refresh-ttl': { option: 'refreshTtl', env: 'TESSERA_REFRESH_TTL', value: 'string', help: "lifetime of a session's refresh token", default: DEFAULTS.refreshTtl },
  'reuse-grace': { option: 'reuseGrace', env: 'TESSERA_REUSE_GRACE', value: 'string', help: 'window in which a just-rotated refresh token may be presented again', default: DEFAULTS.reuseGrace },
  'session-policy': { option: 'sessionPolicy', env: 'TESSERA_SESSION_POLICY', value: ['multiple', 'single'], help: "multiple, or single: a new login ends the user's other sessions", default: DEFAULTS.sessionPolicy },
  signup: { option: 'signup', env: 'TESSERA_SIGNUP', value: ['open', 'closed'], help: 'open, or closed: only `tessera user add` creates users', default: DEFAULTS.signup },
  'private-key': { option: 'privateKeyFile', env: 'TESSERA_PRIVATE_KEY_FILE', value: 'string', help: 'PKCS#8 PEM file to sign with instead of the key ring', default: '(generated)' },
  'rate-limit': { option: 'rateLimit', env: 'TESSERA_RATE_LIMIT', value: 'string', help: 'login/register attempts per IP (all) and per username (failed)', default: DEFAULTS.rateLimit },
  'trust-proxy': { option: 'trustProxy', env: 'TESSERA_TRUST_PROXY', value: 'custom', help: 'trust X-Forwarded-For: "true", or proxy addresses/CIDRs', default: '(off)' },
  'log-level': { option: 'log', env: 'TESSERA_LOG_LEVEL', value: 'custom', help: 'fatal, error, warn, info, debug, trace or silent', default: DEFAULTS.log },
  'web-root': { option: 'webRoot', env: 'TESSERA_WEB_ROOT', value: 'custom', help: 'built web app to serve at / ("none" for no web app)', default: 'apps/web/dist when built' },
  retention: { option: 'retention', env: 'TESSERA_RETENTION', value: 'string', help: 'how long the audit log and ended sessions are kept ("forever": never pruned)', default: DEFAULTS.retention },
  'jwks-max-age': { option: 'jwksMaxAge', env: 'TESSERA_JWKS_MAX_AGE', value: 'int', help: 'seconds verifiers may cache the JWKS; a rotated-in key signs after this', default: String(DEFAULTS.jwksMaxAge) },
  'feed-secret': { option: 'feedSecret', env: 'TESSERA_FEED_SECRET', value: 'string', help: 'the revocation feed answers only Authorization: Bearer <this> (16+ characters)', default: '(none: open; a warning when listening beyond loopback)' },
  'metrics-token': { option: 'metricsToken', env: 'TESSERA_METRICS_TOKEN', value: 'string', help: 'GET /metrics answers Authorization: Bearer <this> from anywhere (16+ characters)', default: '(none: loopback clients only)' },
  'dpop-nonce': { option: 'dpopNonce', env: 'TESSERA_DPOP_NONCE', value: 'on-off', help: 'on: DPoP proofs must carry a current server nonce (RFC 9449 §8), sent in DPoP-Nonce', default: DEFAULTS.dpopNonce ? 'on' : 'off' },
  'feed-streams-per-address': { option: 'feedStreamsPerAddress', env: 'TESSERA_FEED_STREAMS_PER_ADDRESS', value: 'int', help: 'revocation event streams one client address may hold open', default: String(DEFAULTS.feedStreamsPerAddress) },
  'feed-max-streams': { option: 'feedMaxStreams', env: 'TESSERA_FEED_MAX_STREAMS', value: 'int', help: 'revocation event streams per instance (about 16 KiB each)', default: String(DEFAULTS.feedMaxStreams) },
  'smtp-url': { option: 'smtpUrl', env: 'TESSERA_SMTP_URL', value: 'string', help: 'smtp://user:pass@host:port (STARTTLS when offered) or smtps://… for reset and verification mail', default: '(none: mail routes answer 503 not_configured)' },
  'smtp-ca-file': { option: 'smtpCa', env: 'TESSERA_SMTP_CA_FILE', value: 'custom', help: 'PEM file of a private CA to trust for the SMTP server', default: '(the system CAs)' },
  'mail-from': { option: 'mailFrom', env: 'TESSERA_MAIL_FROM', value: 'string', help: 'the sender of account mail', default: DEFAULTS.mailFrom },
  'mail-per-hour': { option: 'mailPerHour', env: 'TESSERA_MAIL_PER_HOUR', value: 'int', help: 'reset and verification mails one account may get per hour', default: String(DEFAULTS.mailPerHour) },
  'public-url': { option: 'publicUrl', env: 'TESSERA_PUBLIC_URL', value: 'string', help: 'where the web app is reached; links in mail point there', default: 'the issuer' },
  'key-encryption-key': { option: 'keyEncryptionKey', env: 'TESSERA_KEY_ENCRYPTION_KEY', value: 'string', help: '32 random bytes (base64) to encrypt private keys at rest', default: '(none: file mode 0600/0700)' },
} as const satisfies Record<string, ServerFlag>;
