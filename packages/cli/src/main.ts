import { DataDirInUseError } from '@tessera/server';
import { migrateCommand } from './commands/migrate.js';
import { auditCommand, keysCommand, tokenCommand, userCommand } from './commands/operator.js';
import { SERVE_FLAGS, serve } from './commands/serve.js';
import { helpText, parseFlags, UsageError } from './options.js';

const USAGE = `Usage: tessera <command> [options]

Commands:
  serve                                   start an auth server
  user add|disable|enable|remove|list     manage users (passwords from stdin only)
  user roles|set-password|reset-link      change roles, set a password, make a one-time reset link
  keys list|rotate|retire KID             manage signing keys
  token decode|verify JWT                 inspect a token
  audit                                   the audit log, newest first
  migrate                                 apply database migrations (serve also does it at start)

Run "tessera <command> --help" for a command's options.`;

const DB_FLAGS = {
  'data-dir': SERVE_FLAGS['data-dir'],
  'database-url': SERVE_FLAGS['database-url'],
} as const;

/**
 * Runs the CLI. Exit codes: 0 ok, 1 failure, 2 usage.
 * @example process.exitCode = await main(process.argv.slice(2))
 */
export async function main(
  argv: string[],
  io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream; env: NodeJS.ProcessEnv; stdin: NodeJS.ReadableStream } = {
    out: process.stdout,
    err: process.stderr,
    env: process.env,
    stdin: process.stdin,
  },
): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case 'serve': {
        const { values, help } = parseFlags(rest, SERVE_FLAGS, io.env);
        if (help) return print(io.out, helpText('Usage: tessera serve [options]', SERVE_FLAGS));
        await serve(values, io.out);
        return 0;
      }
      case 'migrate': {
        const { values, help, json } = parseFlags(rest, DB_FLAGS, io.env);
        if (help) return print(io.out, helpText('Usage: tessera migrate [options]', DB_FLAGS));
        await migrateCommand(values, json, io.out);
        return 0;
      }
      case 'user':
        return await userCommand(rest, io);
      case 'keys':
        return await keysCommand(rest, io);
      case 'token':
        return await tokenCommand(rest, io);
      case 'audit':
        return await auditCommand(rest, io);
      case undefined:
      case '--help':
      case 'help':
        print(io.out, `${USAGE}\n`);
        return command === undefined ? 2 : 0;
      default:
        throw new UsageError(`unknown command "${command}"`);
    }
  } catch (error) {
    if (error instanceof UsageError) {
      io.err.write(`tessera: ${error.message}\n${USAGE}\n`);
      return 2;
    }
    if (error instanceof DataDirInUseError) {
      io.err.write(`tessera: ${error.message}\n`);
      return 1;
    }
    const code = (error as { code?: unknown }).code;
    io.err.write(`tessera: ${(error as Error).message}${typeof code === 'string' && /^[a-z_]+$/.test(code) ? ` (${code})` : ''}\n`);
    return 1;
  }
}

function print(out: NodeJS.WritableStream, text: string): number {
  out.write(text);
  return 0;
}
