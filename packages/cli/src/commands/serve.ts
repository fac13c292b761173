import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { createAuthServer, SERVER_FLAGS, type ServerFlag, type ServerOptions } from '@tessera/server';
import { SERVE_FLAGS, type ServeFlag, UsageError } from '../options.js';

/**
 * Turns `serve` flags into server options, by the server's flag table; a bad value is a
 * usage error naming the flag. The `custom` ones follow their own rule below.
 */
export function serverOptionsFrom(values: Partial<Record<ServeFlag, string>>): ServerOptions {
  const options: Record<string, unknown> = {};
  for (const [flag, spec] of Object.entries(SERVER_FLAGS) as [ServeFlag, ServerFlag][]) {
    const v = values[flag];
    if (spec.value === 'custom') continue;
    if (v === undefined) continue;
    if (spec.value === 'int') {
      if (!/^\d+$/.test(v)) throw new UsageError(`--${flag}: expected a whole number, got ${v}`);
      options[spec.option] = Number(v);
    } else if (spec.value === 'on-off' || Array.isArray(spec.value)) {
      const allowed: readonly string[] = spec.value === 'on-off' ? ['on', 'off'] : spec.value;
      if (!allowed.includes(v)) throw new UsageError(`--${flag}: expected ${allowed.join(' or ')}, got ${v}`);
      options[spec.option] = spec.value === 'on-off' ? v === 'on' : v;
    } else {
      options[spec.option] = v;
    }
  }
  const trust = values['trust-proxy'];
  options.trustProxy = trust === undefined || trust === 'false' ? false : trust === 'true' ? true : trust;
  const level = values['log-level'];
  const levels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
  if (level !== undefined && !levels.includes(level)) throw new UsageError(`--log-level: expected ${levels.join(' or ')}, got ${level}`);
  options.log = level === 'silent' ? false : level;
  options.webRoot = values['web-root'] === 'none' ? undefined : (values['web-root'] ?? builtWebApp());
  if (values['smtp-ca-file'] !== undefined) options.smtpCa = readCa(values['smtp-ca-file']);
  return options as ServerOptions;
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
  // The embedded database is PostgreSQL compiled to WebAssembly. V8's optimising tier
  // keeps about 40-50 MB of compiler memory once PGlite has warmed up, and buys about
  // 10 % of PGlite's statement time (bench/README.md): in a process that is ours alone,
  // PGlite runs on the baseline tier. Set before the database thread compiles it.
  if (!options.databaseUrl) setFlagsFromString('--liftoff-only');
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
  // bin/tessera.js held the young generation at its initial size for the start; under
  // load it grows as V8 sees fit (V8's default factor).
  setFlagsFromString('--semi-space-growth-factor=2');
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
