import { TesseraError } from '@tessera/protocol';
import type { ClientInfo } from '../store/records.js';
import type { AuthContext } from './context.js';

/** Every login and register attempt counts against the client's IP. */
export async function checkIpLimit(ctx: AuthContext, client: ClientInfo): Promise<void> {
  const wait = ctx.limits.ip.consume(`ip:${client.ip ?? 'unknown'}`, ctx.now());
  if (wait > 0) await refuse(ctx, client, wait, 'ip', null);
}

/** Failed logins count against the username; refused while over the limit. */
export async function checkUserLimit(ctx: AuthContext, client: ClientInfo, username: string): Promise<void> {
  const wait = ctx.limits.user.retryAfter(userKey(username), ctx.now());
  if (wait > 0) await refuse(ctx, client, wait, 'user', username);
}

export function countFailedLogin(ctx: AuthContext, username: string): void {
  ctx.limits.user.hit(userKey(username), ctx.now());
}

const userKey = (username: string) => `user:${username.normalize('NFKC').toLowerCase()}`;

async function refuse(ctx: AuthContext, client: ClientInfo, wait: number, scope: 'ip' | 'user', username: string | null): Promise<never> {
  const user = username === null ? null : await ctx.store.findUserByUsername(username).catch(() => null);
  await ctx.store.appendAudit(new Date(ctx.now()), [
    {
      event: 'rate_limited',
      outcome: 'failure',
      userId: user?.id ?? null,
      username: user?.username ?? null,
      ip: client.ip,
      userAgent: client.userAgent,
      reason: `${scope} limit`,
    },
  ]);
  throw new TesseraError('rate_limited', undefined, { retryAfter: wait });
}
