import { TesseraError } from '@tessera/protocol';
import { emailVerificationMail } from '../mail/messages.js';
import type { ClientInfo, UserRecord } from '../store/records.js';
import { accountLink, accountTokenHash, isAccountTokenShape, newAccountToken, VERIFICATION_TTL_SECONDS } from './account_links.js';
import type { Authenticated } from './authenticate.js';
import type { AuthContext } from './context.js';
import { normalizeEmail } from './emails.js';
import { requireMailer } from './password_reset.js';
import { checkIpLimit, takeMailAllowance } from './rate_limits.js';

/**
 * Sets the caller's email, unverified, and mails a verification link to it. A
 * rate-limited account keeps the new address but gets no mail until later.
 */
export async function setEmail(ctx: AuthContext, auth: Authenticated, input: { email: string; client: ClientInfo }): Promise<void> {
  const mailer = requireMailer(ctx);
  const email = normalizeEmail(input.email);
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
  if (await takeMailAllowance(ctx, input.client, user)) sendVerification(ctx, user, email, token);
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
