import { randomUUID } from 'node:crypto';
import { TesseraError } from '@tessera/protocol';
import { newRefreshJti, refreshJtiHash } from '../keys/tokens.js';
import { verifyPassword } from '../lib/passwords.js';
import type { ClientInfo, UserRecord } from '../store/records.js';
import type { AuthContext } from './context.js';
import { type IssuedPair, issueTokenPair } from './issue_token_pair.js';
import { checkIpLimit, takePasswordAttempt } from './rate_limits.js';
import { requireSecondFactor } from './second_factors.js';

/**
 * Password login: checks the password, opens a session and issues its first pair.
 * An unknown user and a wrong password get the same error after the same
 * argon2id work; only the right password learns that an account is disabled.
 */
export async function login(
  ctx: AuthContext,
  input: { username: string; password: string; client: ClientInfo; dpopJkt?: string },
): Promise<IssuedPair> {
  await checkIpLimit(ctx, input.client);
  const account = await findAccount(ctx, input.username);
  const found = account?.user ?? null;
  const refund = await takePasswordAttempt(ctx, input.client, found, input.username);
  // Always one argon2id verify, against a dummy hash when there is no such user.
  const ok = await verifyPassword(found?.passwordHash ?? ctx.dummyHash, input.password);
  if (!found || !ok) {
    await ctx.store.audit.append(new Date(ctx.now()), [
      {
        event: 'login.failed',
        outcome: 'failure',
        userId: found?.id ?? null,
        username: found?.username ?? null,
        ip: input.client.ip,
        userAgent: input.client.userAgent,
        reason: found ? 'wrong_password' : 'unknown_user',
      },
    ]);
    throw new TesseraError('invalid_credentials');
  }
  refund();
  if (found.disabledAt) {
    await ctx.store.audit.append(new Date(ctx.now()), [
      {
        event: 'login.failed',
        outcome: 'failure',
        userId: found.id,
        username: found.username,
        ip: input.client.ip,
        userAgent: input.client.userAgent,
        reason: 'account_disabled',
      },
    ]);
    throw new TesseraError('account_disabled');
  }
  if (account?.totp) await requireSecondFactor(ctx, found);
  return openSession(ctx, found, input.client, ['pwd'], input.dpopJkt);
}

/**
 * The user and whether an authenticator app guards the account, in one read. A
 * username that cannot exist (wrong shape, a NUL byte) is simply not found.
 */
async function findAccount(ctx: AuthContext, username: string): Promise<{ user: UserRecord; totp: boolean } | null> {
  const normalized = username.normalize('NFKC');
  if (normalized.length > 64 || normalized.includes('\u0000')) return null;
  return ctx.store.users.findForLogin(normalized);
}

/**
 * Opens a session for `user` and issues its first token pair. The store opens it
 * only if the user is still as checked (same password hash, not disabled): a
 * login whose password check raced a password change gets no session.
 */
export async function openSession(ctx: AuthContext, user: UserRecord, client: ClientInfo, amr: readonly string[] = ['pwd'], dpopJkt?: string): Promise<IssuedPair> {
  const now = ctx.now();
  const sessionId = randomUUID();
  const jti = newRefreshJti();
  const issuedAt = new Date(now);
  const expiresAt = new Date(now + ctx.config.refreshTtl * 1000);
  const opened = await ctx.store.sessions.open({
    session: { id: sessionId, user, client, amr, ...(dpopJkt ? { dpopJkt } : {}) },
    token: { jtiHash: refreshJtiHash(jti), issuedAt, expiresAt },
    single: ctx.config.sessionPolicy === 'single',
    now: issuedAt,
  });
  if (!opened.opened) throw new TesseraError('invalid_credentials');
  return issueTokenPair(ctx, { user, sessionId, amr, jkt: dpopJkt, refreshJti: jti, issuedAt, expiresAt });
}
