import { DataDirInUseError } from '@tessera/server';
import { migrateCommand } from './commands/migrate.js';
import { SERVE_FLAGS, serve } from './commands/serve.js';
import { helpText, parseFlags, UsageError } from './options.js';

const USAGE = `Usage: tessera <command> [options]

Commands:
  serve      start an auth server
  migrate    apply database migrations (serve also does it at start)

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
  io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream; env: NodeJS.ProcessEnv } = {
    out: process.stdout,
    err: process.stderr,
    env: process.env,
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
    io.err.write(`tessera: ${(error as Error).message}\n`);
    return 1;
  }
}

function print(out: NodeJS.WritableStream, text: string): number {
  out.write(text);
  return 0;
}
