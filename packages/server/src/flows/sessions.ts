import { ACCESS_TOKEN_TYPE, TesseraError } from '@tessera/protocol';
import { decodeProtectedHeader } from 'jose';
import { checkPasswordPolicy, hashPassword } from '../lib/passwords.js';
import type { ClientInfo, SessionRecord } from '../store/records.js';
import { type AccessCredential, type Authenticated, checkBinding, verifyAccessToken } from './authenticate.js';
import type { AuthContext } from './context.js';
import { requireProof } from './dpop_binding.js';
import { confirmPassword } from './password_confirmation.js';
import { verifyRefreshToken } from './rotate_refresh_token.js';

/**
 * Ends the session of an access or refresh token. Idempotent: a token of a
 * session that already ended is fine, a forged or expired one is not.
 */
export async function logout(ctx: AuthContext, input: { credential: AccessCredential; client: ClientInfo }): Promise<void> {
  const { token } = input.credential;
  let typ: unknown;
  try {
    typ = decodeProtectedHeader(token).typ;
  } catch {
    throw new TesseraError('invalid_token');
  }
  let claims: Awaited<ReturnType<typeof verifyAccessToken>> | Awaited<ReturnType<typeof verifyRefreshToken>>;
  if (typ === ACCESS_TOKEN_TYPE) {
    claims = await verifyAccessToken(ctx, token);
    await checkBinding(ctx, claims, input.credential);
  } else {
    claims = await verifyRefreshToken(ctx, token);
    // A refresh token comes as Bearer (or from the cookie); a bound one needs a proof by its key.
    if (claims.cnf?.jkt !== undefined) await requireProof(ctx, input.credential.dpop, { jkt: claims.cnf.jkt, userId: claims.sub, sessionId: claims.sid, client: input.client });
  }
  await ctx.store.sessions.revoke({
    sessionId: claims.sid,
    userId: claims.sub,
    reason: 'logout',
    now: new Date(ctx.now()),
    audit: { userId: claims.sub, username: 'username' in claims ? claims.username : undefined, ip: input.client.ip, userAgent: input.client.userAgent },
  });
}

/** Ends every session of the caller. */
export async function logoutAll(ctx: AuthContext, auth: Authenticated, client: ClientInfo): Promise<void> {
  await ctx.store.sessions.revokeAllOfUser({
    userId: auth.user.id,
    reason: 'logout_all',
    now: new Date(ctx.now()),
    audit: { userId: auth.user.id, username: auth.user.username, ip: client.ip, userAgent: client.userAgent },
  });
}

export function listSessions(ctx: AuthContext, auth: Authenticated): Promise<SessionRecord[]> {
  return ctx.store.sessions.listActive(auth.user.id, new Date(ctx.now()));
}

/** Ends one of the caller's own sessions; someone else's is `not_found`, as is an unknown one. */
export async function revokeOwnSession(
  ctx: AuthContext,
  auth: Authenticated,
  input: { sessionId: string; client: ClientInfo },
): Promise<void> {
  const ended = await ctx.store.sessions.revoke({
    sessionId: input.sessionId,
    userId: auth.user.id,
    reason: 'logout',
    now: new Date(ctx.now()),
    audit: { userId: auth.user.id, username: auth.user.username, ip: input.client.ip, userAgent: input.client.userAgent },
  });
  if (!ended) throw new TesseraError('not_found', 'No such session.');
}

/** Changes the caller's password and ends every other session. */
export async function changePassword(
  ctx: AuthContext,
  auth: Authenticated,
  input: { currentPassword: string; newPassword: string; client: ClientInfo },
): Promise<void> {
  checkPasswordPolicy(input.newPassword);
  await confirmPassword(ctx, auth, { password: input.currentPassword, client: input.client, event: 'password.change_failed' });
  await ctx.store.users.changePassword({
    userId: auth.user.id,
    username: auth.user.username,
    passwordHash: await hashPassword(input.newPassword),
    // Changed only if nothing (a reset, an operator) changed it since we checked it.
    expectedHash: auth.user.passwordHash,
    keepSessionId: auth.session.id,
    now: new Date(ctx.now()),
    client: input.client,
  });
}
