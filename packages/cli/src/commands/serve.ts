import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createAuthServer, type ServerOptions } from '@tessera/server';
import { SERVE_FLAGS, type ServeFlag, UsageError } from '../options.js';

/** Turns `serve` flags into server options; a bad value is a usage error naming the flag. */
export function serverOptionsFrom(values: Partial<Record<ServeFlag, string>>): ServerOptions {
  const int = (flag: ServeFlag): number | undefined => {
    const v = values[flag];
    if (v === undefined) return undefined;
    if (!/^\d+$/.test(v)) throw new UsageError(`--${flag}: expected a whole number, got ${v}`);
    return Number(v);
  };
  const oneOf = <T extends string>(flag: ServeFlag, allowed: readonly T[]): T | undefined => {
    const v = values[flag];
    if (v === undefined) return undefined;
    if (!(allowed as readonly string[]).includes(v)) throw new UsageError(`--${flag}: expected ${allowed.join(' or ')}, got ${v}`);
    return v as T;
  };
  const trust = values['trust-proxy'];
  return {
    port: int('port'),
    host: values.host,
    dataDir: values['data-dir'],
    databaseUrl: values['database-url'],
    databasePoolSize: int('database-pool-size'),
    redisUrl: values['redis-url'],
    issuer: values.issuer,
    audience: values.audience,
    smtpUrl: values['smtp-url'],
    smtpCa: values['smtp-ca-file'] === undefined ? undefined : readCa(values['smtp-ca-file']),
    mailFrom: values['mail-from'],
    mailPerHour: int('mail-per-hour'),
    publicUrl: values['public-url'],
    clientId: values['client-id'],
    alg: oneOf('alg', ['RS256', 'PS256', 'ES256', 'EdDSA'] as const),
    accessTtl: values['access-ttl'],
    refreshTtl: values['refresh-ttl'],
    reuseGrace: values['reuse-grace'],
    retention: values.retention,
    sessionPolicy: oneOf('session-policy', ['multiple', 'single'] as const),
    signup: oneOf('signup', ['open', 'closed'] as const),
    privateKeyFile: values['private-key'],
    rateLimit: values['rate-limit'],
    trustProxy: trust === undefined || trust === 'false' ? false : trust === 'true' ? true : trust,
    log: values['log-level'] === 'silent' ? false : oneOf('log-level', ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const),
    jwksMaxAge: int('jwks-max-age'),
    webRoot: values['web-root'] === 'none' ? undefined : (values['web-root'] ?? builtWebApp()),
    keyEncryptionKey: values['key-encryption-key'],
    feedSecret: values['feed-secret'],
    metricsToken: values['metrics-token'],
    dpopNonce: values['dpop-nonce'] === undefined ? undefined : oneOf('dpop-nonce', ['on', 'off'] as const) === 'on',
    feedStreamsPerAddress: int('feed-streams-per-address'),
    feedMaxStreams: int('feed-max-streams'),
  };
}

/** The React app of apps/web, when it has been built (npm install builds it). */
function builtWebApp(): string | undefined {
  try {
    const dir = join(dirname(createRequire(import.meta.url).resolve('@tessera/web/package.json')), 'dist');
    return existsSync(join(dir, 'index.html')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** `tessera serve`: runs until SIGINT/SIGTERM, then drains in-flight requests and exits. */
export async function serve(values: Partial<Record<ServeFlag, string>>, out: NodeJS.WritableStream): Promise<void> {
  let options: ServerOptions;
  try {
    options = serverOptionsFrom(values);
  } catch (error) {
    throw error instanceof UsageError ? error : new UsageError((error as Error).message);
  }
  let server: Awaited<ReturnType<typeof createAuthServer>>;
  try {
    server = await createAuthServer(options);
  } catch (error) {
    // Bad option values surface as TypeError from the server's validation: a usage error.
    if (error instanceof TypeError) throw new UsageError(error.message);
    throw error;
  }
  let url: string;
  try {
    url = await server.listen();
  } catch (error) {
    // An option only checkable once the port is known (the audience against the issuer).
    if (error instanceof TypeError) {
      await server.close();
      throw new UsageError(error.message);
    }
    throw error;
  }
  out.write(`Tessera auth server listening on ${url} (issuer ${server.context.issuer()})\n`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      server.close().finally(resolve);
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
}

export { SERVE_FLAGS };

function readCa(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (error) {
    throw new UsageError(`--smtp-ca-file: cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
