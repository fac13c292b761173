import { parseArgs } from 'node:util';

/** A usage error: exit code 2, with the command's help. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Flags `serve` takes, each with its environment twin (the flag wins). */
export const SERVE_FLAGS = {
  port: { env: 'PORT', help: 'listen port (0 = any free port)', default: '4000' },
  host: { env: 'HOST', help: 'listen address', default: '127.0.0.1' },
  'data-dir': { env: 'TESSERA_DATA_DIR', help: 'embedded database and generated keys ("memory://": in memory only)', default: './.tessera' },
  'database-url': { env: 'DATABASE_URL', help: 'postgres://… to use a real PostgreSQL instead', default: '(embedded)' },
  'database-pool-size': { env: 'TESSERA_DATABASE_POOL_SIZE', help: 'PostgreSQL connections', default: '10' },
  'redis-url': { env: 'REDIS_URL', help: 'shared rate limits, instant revocation and key fan-out across instances', default: '(none)' },
  issuer: { env: 'TESSERA_ISSUER', help: 'iss of every token', default: 'http://localhost:<port>' },
  audience: { env: 'TESSERA_AUDIENCE', help: 'aud of access tokens (never the issuer)', default: 'tessera-api' },
  'client-id': { env: 'TESSERA_CLIENT_ID', help: 'client_id of access tokens (RFC 9068)', default: 'tessera' },
  alg: { env: 'TESSERA_ALG', help: 'RS256, PS256, ES256 or EdDSA', default: 'RS256' },
  'access-ttl': { env: 'TESSERA_ACCESS_TTL', help: 'access token lifetime (30s, 15m, 1h, 7d)', default: '15m' },
  'refresh-ttl': { env: 'TESSERA_REFRESH_TTL', help: "lifetime of a session's refresh token", default: '30d' },
  'reuse-grace': { env: 'TESSERA_REUSE_GRACE', help: 'window in which a just-rotated refresh token may be presented again', default: '10s' },
  'session-policy': { env: 'TESSERA_SESSION_POLICY', help: "multiple, or single: a new login ends the user's other sessions", default: 'multiple' },
  signup: { env: 'TESSERA_SIGNUP', help: 'open, or closed: only `tessera user add` creates users', default: 'open' },
  'private-key': { env: 'TESSERA_PRIVATE_KEY_FILE', help: 'PKCS#8 PEM file to sign with instead of the key ring', default: '(generated)' },
  'rate-limit': { env: 'TESSERA_RATE_LIMIT', help: 'login/register attempts per IP (all) and per username (failed)', default: 'ip=100/1m,user=10/15m' },
  'trust-proxy': { env: 'TESSERA_TRUST_PROXY', help: 'trust X-Forwarded-For: "true", or proxy addresses/CIDRs', default: '(off)' },
  'log-level': { env: 'TESSERA_LOG_LEVEL', help: 'fatal, error, warn, info, debug, trace or silent', default: 'info' },
  'web-root': { env: 'TESSERA_WEB_ROOT', help: 'built web app to serve at / ("none" for no web app)', default: 'apps/web/dist when built' },
  retention: { env: 'TESSERA_RETENTION', help: 'how long the audit log and ended sessions are kept ("forever": never pruned)', default: '90d' },
  'jwks-max-age': { env: 'TESSERA_JWKS_MAX_AGE', help: 'seconds verifiers may cache the JWKS; a rotated-in key signs after this', default: '300' },
  'feed-secret': { env: 'TESSERA_FEED_SECRET', help: 'the revocation feed answers only Authorization: Bearer <this> (16+ characters)', default: '(none: open; a warning when listening beyond loopback)' },
  'metrics-token': { env: 'TESSERA_METRICS_TOKEN', help: 'GET /metrics answers Authorization: Bearer <this> from anywhere (16+ characters)', default: '(none: loopback clients only)' },
  'dpop-nonce': { env: 'TESSERA_DPOP_NONCE', help: 'on: DPoP proofs must carry a current server nonce (RFC 9449 §8), sent in DPoP-Nonce', default: 'off' },
  'feed-streams-per-address': { env: 'TESSERA_FEED_STREAMS_PER_ADDRESS', help: 'revocation event streams one client address may hold open', default: '32' },
  'feed-max-streams': { env: 'TESSERA_FEED_MAX_STREAMS', help: 'revocation event streams per instance (about 16 KiB each)', default: '4096' },
  'smtp-url': { env: 'TESSERA_SMTP_URL', help: 'smtp://user:pass@host:port (STARTTLS when offered) or smtps://… for reset and verification mail', default: '(none: mail routes answer 503 not_configured)' },
  'smtp-ca-file': { env: 'TESSERA_SMTP_CA_FILE', help: 'PEM file of a private CA to trust for the SMTP server', default: '(the system CAs)' },
  'mail-from': { env: 'TESSERA_MAIL_FROM', help: 'the sender of account mail', default: 'Tessera <no-reply@localhost>' },
  'mail-per-hour': { env: 'TESSERA_MAIL_PER_HOUR', help: 'reset and verification mails one account may get per hour', default: '5' },
  'public-url': { env: 'TESSERA_PUBLIC_URL', help: 'where the web app is reached; links in mail point there', default: 'the issuer' },
  'key-encryption-key': { env: 'TESSERA_KEY_ENCRYPTION_KEY', help: '32 random bytes (base64) to encrypt private keys at rest', default: '(none: file mode 0600/0700)' },
} as const satisfies Record<string, FlagSpec>;

export type ServeFlag = keyof typeof SERVE_FLAGS;

/** A flag: a string (optionally repeated) or a switch, with an optional environment twin. */
export interface FlagSpec {
  env?: string;
  help: string;
  default?: string;
  type?: 'string' | 'boolean';
  multiple?: boolean;
}

export type FlagValues<F extends string> = Partial<Record<F, string>> & { [key: string]: unknown };

/** Parses `args` for the given flags (plus `--help` and `--json`), filling in environment twins. */
export function parseFlags<F extends string>(
  args: string[],
  flags: Record<F, FlagSpec>,
  env: NodeJS.ProcessEnv,
): { values: Partial<Record<F, string>>; lists: Partial<Record<F, string[]>>; switches: Partial<Record<F, boolean>>; help: boolean; json: boolean; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; multiple?: boolean }> = { help: { type: 'boolean' }, json: { type: 'boolean' } };
  for (const [name, spec] of Object.entries(flags) as [string, FlagSpec][]) {
    options[name] = { type: spec.type ?? 'string', ...(spec.multiple ? { multiple: true } : {}) };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const values: Partial<Record<F, string>> = {};
  const lists: Partial<Record<F, string[]>> = {};
  const switches: Partial<Record<F, boolean>> = {};
  for (const [name, spec] of Object.entries(flags) as [F, FlagSpec][]) {
    const raw = parsed.values[name];
    if (spec.type === 'boolean') {
      switches[name] = raw === true;
    } else if (spec.multiple) {
      lists[name] = Array.isArray(raw) ? raw.map(String) : [];
    } else {
      const value = typeof raw === 'string' ? raw : spec.env ? env[spec.env] : undefined;
      if (value !== undefined && value !== '') values[name] = value;
    }
  }
  return { values, lists, switches, help: parsed.values.help === true, json: parsed.values.json === true, positionals: parsed.positionals };
}

export function helpText(usage: string, flags: Record<string, FlagSpec>): string {
  const rows = Object.entries(flags).map(([name, f]) => {
    const extra = [f.env ? `env ${f.env}` : '', f.default ? `default ${f.default}` : ''].filter(Boolean).join(', ');
    return `  --${name.padEnd(20)} ${f.help}${extra ? `\n  ${''.padEnd(22)} ${extra}` : ''}`;
  });
  return `${usage}\n\nOptions (each also read from its environment variable; the flag wins):\n${rows.join('\n')}\n  --help                 show this help\n`;
}
