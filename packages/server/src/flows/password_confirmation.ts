import { TesseraError } from '@tessera/protocol';
import { verifyPassword } from '../lib/passwords.js';
import type { AuditEventName, ClientInfo } from '../store/records.js';
import type { Authenticated } from './authenticate.js';
import type { AuthContext } from './context.js';
import { takePasswordAttempt } from './rate_limits.js';

/**
 * How long after signing in a session may change what guards the account (its
 * recovery address) without typing the password again (OWASP ASVS 3.7.1).
 */
export const RECENT_SIGN_IN_MS = 10 * 60 * 1000;

/** True when the caller's session was opened (by a login, not a refresh) within `RECENT_SIGN_IN_MS`. */
export function signedInRecently(ctx: AuthContext, auth: Authenticated): boolean {
  return ctx.now() - auth.session.createdAt.getTime() <= RECENT_SIGN_IN_MS;
}

/**
 * Checks the caller's current password before a sensitive change. A stolen access
 * token must not become a password oracle: failures count like failed logins and
 * are audited as `failure` (the event of the change that was refused).
 */
export async function confirmPassword(
  ctx: AuthContext,
  auth: Authenticated,
  input: { password: string | undefined; client: ClientInfo; event: AuditEventName },
): Promise<void> {
  const refund = await takePasswordAttempt(ctx, input.client, auth.user, auth.user.username);
  if (input.password !== undefined && (await verifyPassword(auth.user.passwordHash, input.password))) {
    refund();
    return;
  }
  await ctx.store.audit.append(new Date(ctx.now()), [
    {
      event: input.event,
      outcome: 'failure',
      userId: auth.user.id,
      username: auth.user.username,
      sessionId: auth.session.id,
      ip: input.client.ip,
      userAgent: input.client.userAgent,
      reason: input.password === undefined ? 'current_password_missing' : 'wrong_current_password',
    },
  ]);
  throw new TesseraError(
    'invalid_credentials',
    input.password === undefined ? 'Confirm this change with your current password (current_password).' : undefined,
  );
}

/**
 * Before adding a way into the account (a passkey, an authenticator app): a session
 * that signed in within `RECENT_SIGN_IN_MS` goes ahead, an older one must type the
 * password again. Whoever steals a long-lived session cannot plant a factor of their
 * own for later, nor lock the owner out with an authenticator app only they hold.
 */
export async function confirmRecentSignIn(
  ctx: AuthContext,
  auth: Authenticated,
  input: { password: string | undefined; client: ClientInfo; event: AuditEventName },
): Promise<void> {
  if (input.password === undefined && signedInRecently(ctx, auth)) return;
  await confirmPassword(ctx, auth, input);
}
