import { randomUUID } from 'node:crypto';
import { TesseraError } from '@tessera/protocol';
import { checkPasswordPolicy, hashPassword } from '../lib/passwords.js';
import type { ClientInfo, UserRecord } from '../store/records.js';
import type { AuthContext } from './context.js';
import { checkIpLimit } from './rate_limits.js';
import { normalizeUsername, usernameSkeleton } from './usernames.js';

export { normalizeUsername } from './usernames.js';

/** Creates a user from a public sign-up. */
export async function registerUser(
  ctx: AuthContext,
  input: { username: string; password: string; client: ClientInfo },
): Promise<UserRecord> {
  await checkIpLimit(ctx, input.client);
  if (ctx.config.signup === 'closed') throw new TesseraError('signup_disabled');
  const username = normalizeUsername(input.username);
  checkPasswordPolicy(input.password);
  return createUser(ctx, { username, password: input.password, roles: [], client: input.client });
}

/** Creates a user (sign-up or operator). Throws `username_taken`. */
export async function createUser(
  ctx: AuthContext,
  input: { username: string; password: string; roles: string[]; client: ClientInfo },
): Promise<UserRecord> {
  const passwordHash = await hashPassword(input.password);
  return ctx.store.createUser(
    { id: randomUUID(), username: input.username, skeleton: usernameSkeleton(input.username), passwordHash, roles: input.roles, now: new Date(ctx.now()) },
    { ip: input.client.ip, userAgent: input.client.userAgent },
  );
}
