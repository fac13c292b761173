import type { SigningAlgorithm } from '@tessera/protocol';
import { decodeJwt, decodeProtectedHeader } from 'jose';
import { type Call, type DatabaseFlags, withAdmin } from '../admin_access.js';
import { type FlagSpec, helpText, parseFlags, SERVE_FLAGS, UsageError } from '../options.js';

const DB_FLAGS = {
  'data-dir': SERVE_FLAGS['data-dir'],
  'database-url': SERVE_FLAGS['database-url'],
  'key-encryption-key': SERVE_FLAGS['key-encryption-key'],
} satisfies Record<string, FlagSpec>;

interface Io {
  out: NodeJS.WritableStream;
  stdin: NodeJS.ReadableStream;
  env: NodeJS.ProcessEnv;
}

/** `tessera user add|disable|enable|remove|list|roles|set-password|reset-link` */
export async function userCommand(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const flags = {
    ...DB_FLAGS,
    'public-url': SERVE_FLAGS['public-url'],
    username: { help: 'the user' },
    'password-stdin': { type: 'boolean', help: 'read the password from stdin (never from an argument)' },
    role: { multiple: true, help: 'a role for the access token (repeatable)' },
  } satisfies Record<string, FlagSpec>;
  const usage = [
    'Usage: tessera user add --username NAME --password-stdin [--role ROLE]...',
    '       tessera user disable|enable|remove --username NAME',
    '       tessera user roles --username NAME [--role ROLE]...      (replaces the roles; none clears them)',
    '       tessera user set-password --username NAME --password-stdin (ends every session)',
    '       tessera user reset-link --username NAME                   (prints a one-time reset URL, 30 minutes)',
    '       tessera user list [--json]',
  ].join('\n');
  const commands = ['add', 'disable', 'enable', 'remove', 'roles', 'set-password', 'reset-link', 'list'];
  if (!sub || !commands.includes(sub)) {
    if (sub === '--help') return print(io, helpText(usage, flags));
    throw new UsageError(sub ? `unknown user command "${sub}"` : `user needs a command: ${commands.join(', ')}`);
  }
  const { values, lists, switches, help, json, positionals } = parseFlags(rest, flags, io.env);
  if (help) return print(io, helpText(usage, flags));
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}" (a password is read from stdin only)`);
  if (sub !== 'list' && !values.username) throw new UsageError(`user ${sub} needs --username`);
  const username = values.username ?? '';
  let password = '';
  if (sub === 'add' || sub === 'set-password') {
    if (!switches['password-stdin']) throw new UsageError(`user ${sub} needs --password-stdin (a password is never taken from an argument)`);
    password = await readStdin(io.stdin);
    if (!password) throw new UsageError('no password on stdin');
  }
  return withAdmin(values as DatabaseFlags, async (call) => {
    switch (sub) {
      case 'add': {
        const user = await call({ op: 'user.add', username, password, roles: lists.role ?? [] });
        return print(io, json ? user : `created user ${user.username} (${user.id})${user.roles.length ? ` with roles ${user.roles.join(', ')}` : ''}`);
      }
      case 'list': {
        const users = await call({ op: 'user.list' });
        if (json) return print(io, users);
        return print(
          io,
          table(
            ['USERNAME', 'ID', 'EMAIL', 'ROLES', 'STATE', 'SESSIONS', 'CREATED'],
            users.map((u) => [
              u.username,
              u.id,
              u.email ? `${u.email}${u.email_verified ? '' : ' (unverified)'}` : '-',
              u.roles.join(',') || '-',
              u.disabled ? 'disabled' : 'active',
              String(u.active_sessions),
              u.created_at,
            ]),
          ),
        );
      }
      case 'roles': {
        const user = await call({ op: 'user.roles', username, roles: lists.role ?? [] });
        return print(io, json ? user : `${user.username} now has ${user.roles.length ? `roles ${user.roles.join(', ')}` : 'no roles'}; tokens carry them from the next refresh`);
      }
      case 'set-password': {
        const result = await call({ op: 'user.set-password', username, password });
        return print(io, json ? result : `set the password of ${result.username}; ended ${result.sessions_revoked} session(s)`);
      }
      case 'reset-link': {
        const result = await call({ op: 'user.reset-link', username });
        if (json) return print(io, result);
        return print(io, `${result.reset_url}\n(one-time, valid 30 minutes${result.mailed ? '; also mailed to the user' : ''}: hand it to ${result.username} only)`);
      }
      default: {
        const op = sub === 'remove' ? 'user.remove' : sub === 'disable' ? 'user.disable' : 'user.enable';
        const result = await call({ op, username });
        const verb = sub === 'remove' ? 'removed' : sub === 'disable' ? 'disabled' : 'enabled';
        return print(io, json ? result : `${verb} ${result.username}${result.sessions_revoked ? `; ended ${result.sessions_revoked} session(s)` : ''}`);
      }
    }
  });
}

/** `tessera keys list|rotate|retire KID` */
export async function keysCommand(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const flags = { ...DB_FLAGS, alg: { help: 'algorithm of the new key (rotate); default the current one' } } satisfies Record<string, FlagSpec>;
  const usage = 'Usage: tessera keys list [--json]\n       tessera keys rotate [--alg ALG]\n       tessera keys retire KID';
  if (!sub || !['list', 'rotate', 'retire'].includes(sub)) {
    if (sub === '--help') return print(io, helpText(usage, flags));
    throw new UsageError(sub ? `unknown keys command "${sub}"` : 'keys needs a command: list, rotate or retire');
  }
  // Key ids are base64url thumbprints, and one in 64 starts with "-": such a KID is the
  // argument, not a flag (moved behind "--" so parseArgs reads it as one).
  const isFlag = (arg: string) => ['help', 'json', ...Object.keys(flags)].includes(arg.replace(/^--?/, '').split('=')[0]!);
  const kidLike = sub === 'retire' ? rest.find((arg) => arg.startsWith('-') && !isFlag(arg) && arg.length >= 40) : undefined;
  const argv = kidLike ? [...rest.filter((arg) => arg !== kidLike), '--', kidLike] : rest;
  const { values, help, json, positionals } = parseFlags(argv, flags, io.env);
  if (help) return print(io, helpText(usage, flags));
  if (sub === 'retire' && positionals.length !== 1) throw new UsageError('keys retire needs exactly one KID');
  if (values.alg && !['RS256', 'PS256', 'ES256', 'EdDSA'].includes(values.alg)) throw new UsageError(`--alg: expected RS256, PS256, ES256 or EdDSA, got ${values.alg}`);
  return withAdmin(values as DatabaseFlags, async (call: Call) => {
    if (sub === 'list') {
      const keys = await call({ op: 'keys.list' });
      if (json) return print(io, keys);
      return print(io, table(['KID', 'ALG', 'STATE', 'AT REST', 'CREATED', 'SIGNS FROM', 'RETIRED'], keys.map((k) => [k.kid, k.alg, k.state, k.encrypted ? 'sealed' : 'plaintext', k.created_at, k.activates_at, k.retired_at ?? '-'])));
    }
    if (sub === 'rotate') {
      const key = await call({ op: 'keys.rotate', ...(values.alg ? { alg: values.alg as SigningAlgorithm } : {}) });
      return print(io, json ? key : `new ${key.alg} key ${key.kid}: published now, signs from ${key.activates_at}; the old key stays published until its tokens have expired`);
    }
    const result = await call({ op: 'keys.retire', kid: positionals[0]! });
    return print(io, json ? result : `retired ${result.retired}: tokens it signed are refused from now on${result.replacement ? `; new signing key ${result.replacement}` : ''}`);
  });
}

/** `tessera token decode JWT` (no database) and `tessera token verify JWT` (against the key ring). */
export async function tokenCommand(args: string[], io: Io): Promise<number> {
  const [sub, ...rest] = args;
  const usage = 'Usage: tessera token decode JWT\n       tessera token verify JWT';
  if (sub !== 'decode' && sub !== 'verify') {
    if (sub === '--help') return print(io, helpText(usage, DB_FLAGS));
    throw new UsageError(sub ? `unknown token command "${sub}"` : 'token needs a command: decode or verify');
  }
  const { values, help, positionals } = parseFlags(rest, DB_FLAGS, io.env);
  if (help) return print(io, helpText(usage, DB_FLAGS));
  if (positionals.length !== 1) throw new UsageError(`token ${sub} needs exactly one JWT`);
  const token = positionals[0]!;
  if (sub === 'decode') {
    try {
      return print(io, { header: decodeProtectedHeader(token), claims: decodeJwt(token) });
    } catch {
      throw new Error('not a JWT');
    }
  }
  return withAdmin(values as DatabaseFlags, async (call) => {
    const result = await call({ op: 'token.verify', token });
    print(io, result);
    return result.valid ? 0 : 1;
  });
}

/** `tessera audit [--username NAME] [--event EVENT] [--since ISO-TIME] [--limit N] [--json]` */
export async function auditCommand(args: string[], io: Io): Promise<number> {
  const flags = {
    ...DB_FLAGS,
    username: { help: 'only this user' },
    event: { help: 'only this event (login.failed, token.reused, …)' },
    since: { help: 'only events at or after this ISO time' },
    limit: { help: 'at most this many', default: '50' },
  } satisfies Record<string, FlagSpec>;
  const usage = 'Usage: tessera audit [--username NAME] [--event EVENT] [--since ISO-TIME] [--limit N] [--json]';
  const { values, help, json, positionals } = parseFlags(args, flags, io.env);
  if (help) return print(io, helpText(usage, flags));
  if (positionals.length) throw new UsageError(`unexpected argument "${positionals[0]}"`);
  if (values.limit !== undefined && !/^\d{1,5}$/.test(values.limit)) throw new UsageError('--limit: expected a whole number');
  if (values.since !== undefined && Number.isNaN(Date.parse(values.since))) throw new UsageError('--since: expected an ISO time like 2026-01-31T12:00:00Z');
  return withAdmin(values as DatabaseFlags, async (call) => {
    const events = await call({
      op: 'audit',
      username: values.username,
      event: values.event,
      since: values.since,
      limit: values.limit === undefined ? undefined : Number(values.limit),
    });
    if (json) return print(io, events);
    return print(
      io,
      table(
        ['AT', 'EVENT', 'USER', 'SESSION', 'IP', 'BY', 'OUTCOME', 'REASON'],
        events.map((e) => [e.at, e.event, e.username ?? '-', e.session_id ?? '-', e.ip ?? '-', e.actor_username ?? '-', e.outcome, e.reason ?? '']),
      ),
    );
  });
}

function print(io: Io, value: unknown): number {
  io.out.write(typeof value === 'string' ? `${value}\n` : `${JSON.stringify(value, null, 2)}\n`);
  return 0;
}

function table(head: string[], rows: string[][]): string {
  if (rows.length === 0) return '(none)';
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  return [head, ...rows].map((r) => r.map((c, i) => (c ?? '').padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

async function readStdin(stdin: NodeJS.ReadableStream): Promise<string> {
  let text = '';
  for await (const chunk of stdin) text += chunk;
  // One trailing newline is the terminal's, not the password's.
  return text.replace(/\r?\n$/, '');
}
