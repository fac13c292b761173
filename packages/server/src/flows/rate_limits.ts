import { createHash } from 'node:crypto';
import { TesseraError } from '@tessera/protocol';
import type { ClientInfo, UserRecord } from '../store/records.js';
import type { AuthContext } from './context.js';

/**
 * How many times the per-username limit a username may fail in total, from
 * every address together. The per-(username, address) limit stops one client
 * guessing; this one stops a botnet, and since one address can contribute only
 * the per-address limit, locking a real user out takes this many addresses.
 */
export const USER_GLOBAL_FACTOR = 10;

/** Every login and register attempt counts against the client's address. */
export async function checkIpLimit(ctx: AuthContext, client: ClientInfo): Promise<void> {
  const now = ctx.now();
  const key = `ip:${addressGroup(client.ip)}`;
  const wait = await ctx.limits.ip.consume(key, now);
  if (wait > 0) await refuse(ctx, client, wait, key, 'ip limit', null);
}

/**
 * Throws `rate_limited` when the client's address is over its limit, without
 * counting this request (the flow it leads to counts it). For work that must not run
 * for a limited client before the flow's own check, such as verifying a login's DPoP
 * proof, which would remember its `jti`.
 */
export async function checkIpAllowance(ctx: AuthContext, client: ClientInfo): Promise<void> {
  const now = ctx.now();
  const key = `ip:${addressGroup(client.ip)}`;
  const wait = await ctx.limits.ip.consume(key, now);
  if (wait > 0) await refuse(ctx, client, wait, key, 'ip limit', null);
  await ctx.limits.ip.refund(key, now);
}

/**
 * Counts a password attempt against the account before the password is checked
 * (so parallel guesses cannot slip through while argon2 runs), and returns a
 * function that takes it back when the password was right: only failures count.
 * The account is the user id when the user exists, so spellings that fold to the
 * same user share one budget.
 */
export async function takePasswordAttempt(
  ctx: AuthContext,
  client: ClientInfo,
  user: UserRecord | null,
  username: string,
): Promise<() => void> {
  const now = ctx.now();
  const account = user ? `id:${user.id}` : `name:${username.normalize('NFKC').toLowerCase()}`;
  const pairKey = `${account}|${addressGroup(client.ip)}`;
  // Check-and-count is one atomic step per limiter, so parallel guesses cannot all pass.
  const pairWait = await ctx.limits.user.consume(pairKey, now);
  if (pairWait > 0) await refuse(ctx, client, pairWait, pairKey, 'user limit', user);
  const accountWait = await ctx.limits.userGlobal.consume(account, now);
  if (accountWait > 0) {
    await ctx.limits.user.refund(pairKey, now);
    await refuse(ctx, client, accountWait, account, 'user limit', user);
  }
  return () => {
    void ctx.limits.user.refund(pairKey, now);
    void ctx.limits.userGlobal.refund(account, now);
  };
}

/**
 * The unit an address is limited by: an IPv4 address, or the /64 of an IPv6 one
 * (one subscriber usually holds a whole /64, so single addresses are free to them).
 */
export function addressGroup(ip: string | null): string {
  if (!ip) return 'unknown';
  if (!ip.includes(':')) return ip;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (mapped) return mapped[1]!;
  const [head = '', tail = ''] = ip.toLowerCase().split('%')[0]!.split('::');
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const groups = ip.includes('::') ? [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right] : left;
  return `${groups.slice(0, 4).map((g) => Number.parseInt(g || '0', 16).toString(16)).join(':')}::/64`;
}

async function refuse(
  ctx: AuthContext,
  client: ClientInfo,
  wait: number,
  key: string,
  reason: string,
  user: UserRecord | null,
): Promise<never> {
  ctx.metrics.rateLimited.inc({ scope: reason === 'ip limit' ? 'ip' : 'user' });
  // One audit row per limited key and window: a client hammering past its limit
  // must not be able to grow the audit table at request rate.
  if (ctx.limits.reported(key, ctx.now())) {
    await ctx.store.audit.append(new Date(ctx.now()), [
      {
        event: 'rate_limited',
        outcome: 'failure',
        userId: user?.id ?? null,
        username: user?.username ?? null,
        ip: client.ip,
        userAgent: client.userAgent,
        reason,
      },
    ]);
  }
  throw new TesseraError('rate_limited', undefined, { retryAfter: wait });
}

/**
 * Counts one account mail (a reset or a verification link) against the account and
 * against the address it goes to (sign-ups with someone else's address must not
 * turn the server into a mail cannon). Over either limit, the mail is not sent and
 * the caller is told nothing different: returns false, with one `rate_limited`
 * audit row per window.
 */
export async function takeMailAllowance(ctx: AuthContext, client: ClientInfo, user: UserRecord, address: string): Promise<boolean> {
  const now = ctx.now();
  const recipient = `mail-to:${createHash('sha256').update(address.toLowerCase()).digest('base64url')}`;
  const waits = [await ctx.limits.mail.consume(`mail:${user.id}`, now), await ctx.limits.mail.consume(recipient, now)];
  if (waits.every((wait) => wait === 0)) return true;
  ctx.metrics.rateLimited.inc({ scope: 'user' });
  if (ctx.limits.reported(`mail:${user.id}`, now)) {
    await ctx.store.audit.append(new Date(now), [
      { event: 'rate_limited', outcome: 'failure', userId: user.id, username: user.username, ip: client.ip, userAgent: client.userAgent, reason: 'mail limit' },
    ]);
  }
  return false;
}
