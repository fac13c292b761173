import { randomUUID } from 'node:crypto';
import { TesseraError } from '@tessera/protocol';
import { checkPasswordPolicy, hashPassword } from '../lib/passwords.js';
import type { ClientInfo, UserRecord } from '../store/records.js';
import type { AuditBase } from '../store/users_store.js';
import { newAccountToken } from './account_links.js';
import type { AccountsContext, AuthContext } from './context.js';
import { sendVerification } from './email_verification.js';
import { normalizeEmail } from './emails.js';
import { requireMailer } from './password_reset.js';
import { checkIpLimit, takeMailAllowance } from './rate_limits.js';
import { normalizeUsername, usernameSkeleton } from './usernames.js';

export { normalizeUsername } from './usernames.js';

/** Creates a user from a public sign-up; with an email, mails its verification link. */
export async function registerUser(
  ctx: AuthContext,
  input: { username: string; password: string; email?: string; client: ClientInfo },
): Promise<UserRecord> {
  await checkIpLimit(ctx, input.client);
  if (ctx.config.signup === 'closed') throw new TesseraError('signup_disabled');
  const username = normalizeUsername(input.username);
  checkPasswordPolicy(input.password);
  if (input.email === undefined) return createUser(ctx, { username, password: input.password, roles: [], audit: { ip: input.client.ip, userAgent: input.client.userAgent } });
  requireMailer(ctx);
  const email = normalizeEmail(input.email);
  const { token, stored } = newAccountToken('email_verification', ctx.now(), email);
  const user = await createUser(ctx, { username, password: input.password, roles: [], email, verification: stored, audit: { ip: input.client.ip, userAgent: input.client.userAgent } });
  if (await takeMailAllowance(ctx, input.client, user, email)) sendVerification(ctx, user, email, token);
  return user;
}

/**
 * Creates a user (sign-up, admin or operator) from a normalized name and a password
 * that passed the policy. Throws `username_taken` or `email_taken`.
 */
export async function createUser(
  ctx: AccountsContext,
  input: { username: string; password: string; roles: string[]; email?: string; verification?: ReturnType<typeof newAccountToken>['stored']; audit: AuditBase },
): Promise<UserRecord> {
  const passwordHash = await hashPassword(input.password);
  return ctx.store.users.create(
    {
      id: randomUUID(),
      username: input.username,
      skeleton: usernameSkeleton(input.username),
      passwordHash,
      roles: input.roles,
      ...(input.email ? { email: input.email, verification: input.verification } : {}),
      now: new Date(ctx.now()),
    },
    input.audit,
  );
}
