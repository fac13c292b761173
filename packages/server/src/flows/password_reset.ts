import { TesseraError } from '@tessera/protocol';
import { checkPasswordPolicy, hashPassword } from '../lib/passwords.js';
import type { Mailer } from '../mail/mailer.js';
import { passwordResetMail, securityNoticeMail } from '../mail/messages.js';
import type { ClientInfo, UserRecord } from '../store/records.js';
import type { UserRef } from '../store/users_store.js';
import { accountLink, accountTokenHash, isAccountTokenShape, newAccountToken, RESET_TTL_SECONDS } from './account_links.js';
import { type Actor, actorAudit } from './actors.js';
import type { AccountsContext, AuthContext } from './context.js';
import { normalizeEmail } from './emails.js';
import { checkIpLimit, takeMailAllowance } from './rate_limits.js';

/** Without `--smtp-url` a route that must send mail refuses before it changes anything. */
export function requireMailer(ctx: AccountsContext): Mailer {
  if (!ctx.mailer) throw new TesseraError('not_configured');
  return ctx.mailer;
}

/**
 * "Forgot password": mails a one-time reset link when the account has a verified
 * email. The caller learns nothing: the answer is the same for unknown users,
 * users without a verified address, disabled users and rate-limited accounts, and
 * every path does the same database work (one lookup, one audited write).
 */
export async function requestPasswordReset(ctx: AuthContext, input: { username?: string; email?: string; client: ClientInfo }): Promise<void> {
  const mailer = requireMailer(ctx);
  await checkIpLimit(ctx, input.client);
  const user = await findAccount(ctx, input);
  const audit = { ip: input.client.ip, userAgent: input.client.userAgent };
  const now = new Date(ctx.now());
  const refusal = !user ? 'unknown_user' : !user.email || !user.emailVerifiedAt ? 'no_verified_email' : user.disabledAt ? 'account_disabled' : null;
  if (refusal || !user?.email) {
    await ctx.store.audit.append(now, [
      { ...audit, event: 'password.reset_requested', outcome: 'failure', userId: user?.id ?? null, username: user?.username ?? null, reason: refusal },
    ]);
    return;
  }
  if (!(await takeMailAllowance(ctx, input.client, user, user.email))) {
    // The same database work as every other path: one audited write.
    await ctx.store.audit.append(now, [
      { ...audit, event: 'password.reset_requested', outcome: 'failure', userId: user.id, username: user.username, reason: 'mail limit' },
    ]);
    return;
  }
  const { token, stored } = newAccountToken('password_reset', now.getTime());
  await ctx.store.accountTokens.issueReset({ userId: user.id, username: user.username, token: stored, now, audit });
  mailer.send(
    user.email,
    passwordResetMail({ username: user.username, url: accountLink(ctx.publicUrl(), 'password_reset', token), validMinutes: RESET_TTL_SECONDS / 60 }),
    { kind: 'password_reset', userId: user.id },
  );
}

/**
 * A reset link made by an admin or an operator, for users without mail (or to read
 * out on the phone): returned, and mailed too when the user has a verified address
 * and mail is set up.
 */
export async function issueResetLink(ctx: AccountsContext, input: { user: UserRef; actor: Actor }): Promise<{ user: UserRecord; resetUrl: string; mailed: boolean }> {
  const user = await ctx.store.users.find(input.user);
  if (!user) throw new TesseraError('not_found', 'username' in input.user ? `No user "${input.user.username}".` : 'No such user.');
  // The link could not be used (a disabled account cannot reset its password): say so now.
  if (user.disabledAt) throw new TesseraError('invalid_request', 'This account is disabled: enable it first.');
  const now = new Date(ctx.now());
  const { token, stored } = newAccountToken('password_reset', now.getTime());
  await ctx.store.accountTokens.issueReset({
    userId: user.id,
    username: user.username,
    token: stored,
    now,
    audit: { ...actorAudit(input.actor), reason: input.actor.kind === 'admin' ? 'link made by an admin' : 'link made by an operator' },
  });
  const resetUrl = accountLink(ctx.publicUrl(), 'password_reset', token);
  const mailed = Boolean(ctx.mailer && user.email && user.emailVerifiedAt);
  if (mailed) {
    ctx.mailer!.send(user.email!, passwordResetMail({ username: user.username, url: resetUrl, validMinutes: RESET_TTL_SECONDS / 60 }), {
      kind: 'password_reset',
      userId: user.id,
    });
  }
  return { user, resetUrl, mailed };
}

/**
 * Sets a new password with a reset token: the token works once, for 30 minutes; every
 * session of the user ends. It is never a login: the user signs in afterwards.
 */
export async function resetPassword(ctx: AuthContext, input: { token: string; newPassword: string; client: ClientInfo }): Promise<void> {
  // Tokens are 256 random bits, but every guessable thing is rate limited.
  await checkIpLimit(ctx, input.client);
  checkPasswordPolicy(input.newPassword);
  if (!isAccountTokenShape(input.token)) throw new TesseraError('invalid_reset_token');
  const passwordHash = await hashPassword(input.newPassword);
  const redeemed = await ctx.store.accountTokens.redeemReset({ tokenHash: accountTokenHash(input.token), passwordHash, now: new Date(ctx.now()), client: input.client });
  if (!redeemed) throw new TesseraError('invalid_reset_token');
  notifyOwner(ctx, redeemed.user, 'The password of your Tessera account was reset with a link mailed to this address, and every session was signed out.');
}

/** Tells the account's verified address about a change that could be someone else's doing. */
export function notifyOwner(ctx: AccountsContext, user: UserRecord, what: string, address = user.emailVerifiedAt ? user.email : null): void {
  if (!ctx.mailer || !address) return;
  ctx.mailer.send(address, securityNoticeMail({ username: user.username, what }), { kind: 'security_notice', userId: user.id });
}

async function findAccount(ctx: AuthContext, input: { username?: string; email?: string }): Promise<UserRecord | null> {
  if (input.email !== undefined) {
    let email: string;
    try {
      email = normalizeEmail(input.email);
    } catch {
      return null;
    }
    return ctx.store.users.findByEmail(email);
  }
  const username = (input.username ?? '').normalize('NFKC');
  if (username.length === 0 || username.length > 64 || username.includes('\u0000')) return null;
  return ctx.store.users.findByUsername(username);
}
