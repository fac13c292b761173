import { createHash, randomBytes } from 'node:crypto';
import { TesseraError } from '@tessera/protocol';
import { HOTP, Secret, TOTP } from 'otpauth';
import { openSecret, sealSecret } from '../keys/key_encryption.js';
import { verifyPassword } from '../lib/passwords.js';
import type { Queryable } from '../store/database.js';
import type { ClientInfo, UserRecord } from '../store/records.js';
import { accountTokenHash, isAccountTokenShape } from './account_links.js';
import type { Authenticated } from './authenticate.js';
import type { AuthContext } from './context.js';
import type { IssuedPair } from './issue_token_pair.js';
import { openSession } from './login.js';
import { notifyOwner } from './password_reset.js';
import { checkIpLimit, takePasswordAttempt } from './rate_limits.js';

/** RFC 6238 as every authenticator app reads it: SHA-1, 6 digits, 30 s. */
const TOTP_PARAMETERS = { algorithm: 'SHA1', digits: 6, period: 30 } as const;
/** The name authenticator apps show beside the account. */
const TOTP_ISSUER = 'Tessera';
/** How long the step between password and code lasts. */
export const MFA_TOKEN_TTL_SECONDS = 300;
/** Wrong codes a login step survives before it is worthless. */
export const MFA_MAX_FAILURES = 5;
/**
 * Wrong codes in a row at the login step (across mfa_tokens) after which codes from
 * the authenticator app are refused until a recovery code or a new password: without
 * it, whoever knows the password gets ~100 guesses per 15 minutes for ever (NIST
 * SP 800-63B §5.2.2 allows at most 100 consecutive failures).
 */
export const TOTP_LOCKOUT_FAILURES = 10;
/** What `mfa_required` offers. */
export const MFA_METHODS = ['totp', 'recovery_code'] as const;
const RECOVERY_CODES = 10;

/**
 * Starts an authenticator-app enrolment: a new secret (160 bits, sealed at rest with
 * the key-encryption key when there is one) that protects nothing until a code from
 * it is confirmed. Refused while a confirmed one exists.
 */
export async function startTotpEnrolment(ctx: AuthContext, auth: Authenticated): Promise<{ secret: string; otpauthUri: string }> {
  const secret = new Secret({ size: 20 });
  const started = await ctx.store.secondFactors.startTotp({
    userId: auth.user.id,
    secret: await sealSecret({ totp: secret.base32 }, ctx.config.keyEncryptionKey),
    now: new Date(ctx.now()),
  });
  if (!started) throw new TesseraError('invalid_request', 'An authenticator app is already set up: remove it first.');
  const uri = new TOTP({ issuer: TOTP_ISSUER, label: auth.user.username, secret, ...TOTP_PARAMETERS }).toString();
  return { secret: secret.base32, otpauthUri: uri };
}

/**
 * Confirms the enrolment with a current code; from now on a login needs a second
 * factor. Returns ten single-use recovery codes, shown this once (stored as hashes).
 */
export async function confirmTotp(ctx: AuthContext, auth: Authenticated, input: { code: string; client: ClientInfo }): Promise<string[]> {
  const refund = await takePasswordAttempt(ctx, input.client, auth.user, auth.user.username);
  if (!(await checkTotp(ctx, auth.user, input.code, false))) {
    await auditFailure(ctx, auth.user, input.client, 'wrong_code_at_enrolment');
    throw new TesseraError('invalid_code');
  }
  refund();
  const codes = Array.from({ length: RECOVERY_CODES }, newRecoveryCode);
  const confirmed = await ctx.store.secondFactors.confirmTotp({
    user: auth.user,
    recoveryCodeHashes: codes.map(recoveryCodeHash),
    now: new Date(ctx.now()),
    audit: { ip: input.client.ip, userAgent: input.client.userAgent, sessionId: auth.session.id },
  });
  if (!confirmed) throw new TesseraError('invalid_code');
  return codes;
}

/** Turns the authenticator app off (its recovery codes die with it), with a current code or the password. */
export async function disableTotp(ctx: AuthContext, auth: Authenticated, input: { code?: string; password?: string; client: ClientInfo }): Promise<void> {
  if (!(await ctx.store.secondFactors.hasConfirmedTotp(auth.user.id))) throw new TesseraError('not_found', 'No authenticator app is set up.');
  const refund = await takePasswordAttempt(ctx, input.client, auth.user, auth.user.username);
  if (input.password !== undefined) {
    if (!(await verifyPassword(auth.user.passwordHash, input.password))) throw new TesseraError('invalid_credentials');
  } else if (!isRightFactor(await verifySecondFactor(ctx, auth.user, input.code ?? ''))) {
    await auditFailure(ctx, auth.user, input.client, 'wrong_code');
    throw new TesseraError('invalid_code');
  }
  refund();
  await ctx.store.secondFactors.removeTotp({
    user: auth.user,
    now: new Date(ctx.now()),
    audit: { ip: input.client.ip, userAgent: input.client.userAgent, sessionId: auth.session.id },
    reason: input.password !== undefined ? 'with the password' : 'with a code',
  });
}

/**
 * After a right password, for a user with a second factor: no session yet, but a
 * one-time `mfa_token` (256 random bits, only its hash stored) for `POST
 * /auth/login/mfa`. It is no JWT, so nothing anywhere takes it for a token.
 */
export async function requireSecondFactor(ctx: AuthContext, user: UserRecord): Promise<never> {
  const token = randomBytes(32).toString('base64url');
  const now = ctx.now();
  await ctx.store.secondFactors.createChallenge({ tokenHash: accountTokenHash(token), user, now: new Date(now), expiresAt: new Date(now + MFA_TOKEN_TTL_SECONDS * 1000) });
  throw new TesseraError('mfa_required', 'A second factor is needed: send the mfa_token with a code to POST /auth/login/mfa.', {
    details: { mfa_token: token, methods: [...MFA_METHODS] },
  });
}

/**
 * The login's second step: a live `mfa_token` and a TOTP or recovery code open the
 * session (`amr: ["pwd", "otp"]`). Wrong codes count toward the login limits and
 * wear the token out after `MFA_MAX_FAILURES`; a password change or a disable since
 * the password step kills it.
 */
export async function completeMfaLogin(ctx: AuthContext, input: { mfaToken: string; code: string; client: ClientInfo; dpopJkt?: string }): Promise<IssuedPair> {
  await checkIpLimit(ctx, input.client);
  const dead = () => new TesseraError('invalid_token', 'This sign-in step is over (expired, used or failed too often): sign in again.');
  if (!isAccountTokenShape(input.mfaToken)) throw dead();
  const tokenHash = accountTokenHash(input.mfaToken);
  const now = new Date(ctx.now());
  const found = await ctx.store.secondFactors.liveChallenge(tokenHash, now, MFA_MAX_FAILURES);
  if (!found) throw dead();
  // Counted before the code is looked at, so that guesses are bounded per account.
  const refund = await takePasswordAttempt(ctx, input.client, found.user, found.user.username);
  let locked = false;
  const outcome = await ctx.store.secondFactors.completeChallenge({
    tokenHash,
    now,
    maxFailures: MFA_MAX_FAILURES,
    client: input.client,
    check: async (tx, user) => {
      const kind = await verifySecondFactor(ctx, user, input.code, tx);
      locked = kind === 'locked';
      return isRightFactor(kind);
    },
  });
  switch (outcome.kind) {
    case 'dead':
      throw dead();
    case 'disabled':
      throw new TesseraError('account_disabled');
    case 'wrong':
      if (outcome.factorFailures === TOTP_LOCKOUT_FAILURES) {
        notifyOwner(
          ctx,
          outcome.user,
          `Someone who knows the password of your Tessera account entered ${TOTP_LOCKOUT_FAILURES} wrong codes. Codes from your authenticator app are refused until you sign in with a recovery code or reset your password. Please change your password.`,
        );
      }
      throw new TesseraError(
        'invalid_code',
        locked ? 'Too many wrong codes: your authenticator app is locked. Use a recovery code, or reset your password.' : undefined,
      );
    case 'right':
      refund();
      return openSession(ctx, outcome.user, input.client, ['pwd', 'otp'], input.dpopJkt);
  }
}

/**
 * Checks a second factor: a 6-digit TOTP code (a step at most once) or a recovery
 * code (each once). Returns which one it was, `locked` for a TOTP code while the app
 * is locked by wrong codes (recovery codes still work), or null. With `tx`, the code
 * is spent in that transaction.
 */
export async function verifySecondFactor(ctx: AuthContext, user: UserRecord, code: string, tx?: Queryable): Promise<'totp' | 'recovery_code' | 'locked' | null> {
  const compact = code.replace(/[\s-]/g, '').toLowerCase();
  if (/^\d{6}$/.test(compact)) {
    const factor = await ctx.store.secondFactors.totp(user.id, tx);
    if (factor && factor.failures >= TOTP_LOCKOUT_FAILURES) return 'locked';
    return (await checkTotp(ctx, user, compact, true, tx)) ? 'totp' : null;
  }
  if (/^[a-z2-7]{16}$/.test(compact)) {
    return (await ctx.store.secondFactors.useRecoveryCode(user.id, recoveryCodeHash(compact), new Date(ctx.now()), tx)) ? 'recovery_code' : null;
  }
  return null;
}

/** A code from the previous, current or next 30 s step, each step accepted once per user. */
async function checkTotp(ctx: AuthContext, user: UserRecord, code: string, confirmed: boolean, tx?: Queryable): Promise<boolean> {
  if (!/^\d{6}$/.test(code)) return false;
  const factor = await ctx.store.secondFactors.totp(user.id, tx);
  if (!factor || (factor.confirmedAt !== null) !== confirmed) return false;
  const opened = await openSecret(factor.secret, ctx.config.keyEncryptionKey, `the TOTP secret of user ${user.id}`);
  const secret = Secret.fromBase32(String(opened.totp));
  const counter = TOTP.counter({ period: TOTP_PARAMETERS.period, timestamp: ctx.now() });
  const delta = HOTP.validate({ token: code, secret, algorithm: TOTP_PARAMETERS.algorithm, digits: TOTP_PARAMETERS.digits, counter, window: 1 });
  if (delta === null) return false;
  return ctx.store.secondFactors.takeTotpStep(user.id, counter + delta, confirmed, tx);
}

function isRightFactor(kind: Awaited<ReturnType<typeof verifySecondFactor>>): boolean {
  return kind === 'totp' || kind === 'recovery_code';
}

/** 80 random bits as 16 base32 letters, grouped by four for reading aloud. */
function newRecoveryCode(): string {
  const letters = new Secret({ buffer: new Uint8Array(randomBytes(10)).buffer }).base32.toLowerCase();
  return letters.match(/.{4}/g)!.join('-');
}

function recoveryCodeHash(code: string): string {
  return createHash('sha256').update(code.replace(/[\s-]/g, '').toLowerCase(), 'utf8').digest('base64url');
}

async function auditFailure(ctx: AuthContext, user: UserRecord, client: ClientInfo, reason: string): Promise<void> {
  await ctx.store.audit.append(new Date(ctx.now()), [{ event: 'mfa.failed', outcome: 'failure', userId: user.id, username: user.username, ip: client.ip, userAgent: client.userAgent, reason }]);
}
