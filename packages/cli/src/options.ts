import { parseArgs } from 'node:util';
import { SERVER_FLAGS } from '@tessera/server';

/** A usage error: exit code 2, with the command's help. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** Flags `serve` takes, each with its environment twin (the flag wins): the server's own table. */
export const SERVE_FLAGS = Object.fromEntries(
  Object.entries(SERVER_FLAGS).map(([name, flag]) => [name, { env: flag.env, help: flag.help, default: flag.default }]),
) as Record<keyof typeof SERVER_FLAGS, FlagSpec & { env: string; default: string }>;

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
