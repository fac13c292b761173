import { TesseraError } from '@tessera/protocol';
import { emailVerificationMail } from '../mail/messages.js';
import type { ClientInfo, UserRecord } from '../store/records.js';
import { accountLink, accountTokenHash, isAccountTokenShape, newAccountToken, VERIFICATION_TTL_SECONDS } from './account_links.js';
import type { Authenticated } from './authenticate.js';
import type { AuthContext } from './context.js';
import { normalizeEmail } from './emails.js';
import { confirmPassword, signedInRecently } from './password_confirmation.js';
import { notifyOwner, requireMailer } from './password_reset.js';
import { checkIpLimit, takeMailAllowance } from './rate_limits.js';

/**
 * Sets the caller's email, unverified, and mails a verification link to it. The
 * address is what password resets go to, so whoever holds a session must not be able
 * to move it quietly: `current_password` is required unless the session signed in
 * within the last minutes and the account has no verified address yet, and the old
 * verified address is told. A rate-limited account keeps the new address but gets no
 * mail until later.
 */
export async function setEmail(ctx: AuthContext, auth: Authenticated, input: { email: string; currentPassword?: string; client: ClientInfo }): Promise<void> {
  requireMailer(ctx);
  await checkIpLimit(ctx, input.client);
  const email = normalizeEmail(input.email);
  const previous = auth.user.emailVerifiedAt ? auth.user.email : null;
  if (input.currentPassword !== undefined || previous !== null || !signedInRecently(ctx, auth)) {
    await confirmPassword(ctx, auth, { password: input.currentPassword, client: input.client, event: 'email.changed' });
  }
  const now = ctx.now();
  const { token, stored } = newAccountToken('email_verification', now, email);
  const user = await ctx.store.users.setEmail({
    userId: auth.user.id,
    email,
    verification: stored,
    now: new Date(now),
    audit: { ip: input.client.ip, userAgent: input.client.userAgent, sessionId: auth.session.id },
  });
  if (!user) throw new TesseraError('token_revoked');
  if (previous !== null && previous.toLowerCase() !== email.toLowerCase()) {
    notifyOwner(ctx, user, `The email address of your Tessera account was changed to ${email}; password reset links now go there.`, previous);
  }
  if (await takeMailAllowance(ctx, input.client, user, email)) sendVerification(ctx, user, email, token);
}

/** Mails the link that verifies `email` for `user` (sign-up with an email, or a new address). */
export function sendVerification(ctx: AuthContext, user: UserRecord, email: string, token: string): void {
  requireMailer(ctx).send(
    email,
    emailVerificationMail({ username: user.username, url: accountLink(ctx.publicUrl(), 'email_verification', token), validHours: VERIFICATION_TTL_SECONDS / 3600 }),
    { kind: 'email_verification', userId: user.id },
  );
}

/** Follows a verification link: the address it was sent to becomes verified, if it is still the user's. */
export async function verifyEmail(ctx: AuthContext, input: { token: string; client: ClientInfo }): Promise<void> {
  await checkIpLimit(ctx, input.client);
  if (!isAccountTokenShape(input.token)) throw new TesseraError('invalid_reset_token');
  const user = await ctx.store.accountTokens.redeemVerification({ tokenHash: accountTokenHash(input.token), now: new Date(ctx.now()), client: input.client });
  if (!user) throw new TesseraError('invalid_reset_token');
}
