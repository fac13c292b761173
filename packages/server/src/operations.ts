import { randomUUID } from 'node:crypto';
import { ACCESS_TOKEN_TYPE, REFRESH_TOKEN_TYPE, SIGNING_ALGORITHMS, type SigningAlgorithm, TesseraError } from '@tessera/protocol';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors, jwtVerify } from 'jose';
import { normalizeUsername, usernameSkeleton } from './flows/usernames.js';
import { isSealed, openPrivateJwk } from './keys/key_encryption.js';
import { generateSigningKey, type KeyRing } from './keys/key_ring.js';
import { checkPasswordPolicy, hashPassword } from './lib/passwords.js';
import type { AuditEventName } from './store/records.js';
import type { Store } from './store/store.js';
import { migrationState } from './store/migrations.js';

/** What an operator can ask for: the same requests whether the CLI reaches the database or a running server. */
export type AdminRequest =
  | { op: 'user.add'; username: string; password: string; roles?: string[] }
  | { op: 'user.disable' | 'user.enable' | 'user.remove'; username: string }
  | { op: 'user.list' }
  | { op: 'keys.list' }
  | { op: 'keys.rotate'; alg?: SigningAlgorithm }
  | { op: 'keys.retire'; kid: string }
  | { op: 'token.verify'; token: string }
  | { op: 'audit'; username?: string; event?: string; since?: string; limit?: number }
  | { op: 'migrations' };

export const ADMIN_OPS = ['user.add', 'user.disable', 'user.enable', 'user.remove', 'user.list', 'keys.list', 'keys.rotate', 'keys.retire', 'token.verify', 'audit', 'migrations'] as const;

/** Where operations run: a store, a clock, and (inside a running server) its live key ring. */
export interface AdminHost {
  store: Store;
  now: () => number;
  /** The running server's key ring, reloaded after key operations. */
  keys?: KeyRing;
  /** Tells other instances to reload their key rings (Redis). */
  onKeysChanged?: () => void;
  /** Seconds a rotated-in key waits before it signs (the JWKS max-age). Default 300. */
  keyActivationDelay?: number;
  /** The signing algorithm of new keys when the request names none. */
  alg?: SigningAlgorithm;
  keyEncryptionKey?: Uint8Array;
}

const OPERATOR = { ip: null, userAgent: 'tessera-cli' } as const;

/**
 * Runs one operator request and returns a JSON-ready result. Bad input is a
 * `TesseraError` (`invalid_request`, `not_found`, `username_taken`, `weak_password`).
 */
export async function runAdminOperation(host: AdminHost, request: AdminRequest): Promise<unknown> {
  const now = new Date(host.now());
  switch (request.op) {
    case 'user.add': {
      const username = normalizeUsername(String(request.username ?? ''));
      checkPasswordPolicy(String(request.password ?? ''));
      const roles = (request.roles ?? []).map(String);
      for (const role of roles) {
        if (!/^[a-z][a-z0-9_.:-]{0,63}$/i.test(role)) throw new TesseraError('invalid_request', `Invalid role "${role}".`);
      }
      const user = await host.store.createUser(
        { id: randomUUID(), username, skeleton: usernameSkeleton(username), passwordHash: await hashPassword(request.password), roles, now },
        OPERATOR,
      );
      return { id: user.id, username: user.username, roles: user.roles };
    }
    case 'user.disable':
    case 'user.enable': {
      const result = await host.store.setUserDisabled({ username: request.username, disabled: request.op === 'user.disable', now, audit: OPERATOR });
      if (!result) throw new TesseraError('not_found', `No user "${request.username}".`);
      return { id: result.user.id, username: result.user.username, disabled: request.op === 'user.disable', sessions_revoked: result.revoked.length };
    }
    case 'user.remove': {
      const result = await host.store.removeUser({ username: request.username, now, audit: OPERATOR });
      if (!result) throw new TesseraError('not_found', `No user "${request.username}".`);
      return { id: result.user.id, username: result.user.username, removed: true, sessions_revoked: result.revoked.length };
    }
    case 'user.list':
      return (await host.store.listUsers(now)).map((u) => ({
        id: u.id,
        username: u.username,
        roles: u.roles,
        disabled: u.disabledAt !== null,
        created_at: u.createdAt.toISOString(),
        active_sessions: u.activeSessions,
      }));
    case 'keys.list': {
      const signer = host.keys?.signer.kid;
      const published = new Set(host.keys?.jwks().keys.map((k) => k.kid));
      return (await host.store.listSigningKeys()).map((k) => ({
        kid: k.kid,
        alg: k.alg,
        created_at: k.createdAt.toISOString(),
        activates_at: k.activatesAt.toISOString(),
        retired_at: k.retiredAt?.toISOString() ?? null,
        state: k.retiredAt ? 'retired' : k.kid === signer ? 'signing' : k.activatesAt > now ? 'pending' : host.keys && !published.has(k.kid) ? 'expired' : 'published',
        encrypted: isSealed(k.privateJwk),
      }));
    }
    case 'keys.rotate': {
      const alg = request.alg ?? host.alg ?? (await newestAlg(host.store)) ?? 'RS256';
      if (!SIGNING_ALGORITHMS.includes(alg)) throw new TesseraError('invalid_request', `Unknown algorithm "${alg}".`);
      const activatesAt = new Date(now.getTime() + (host.keyActivationDelay ?? 300) * 1000);
      const key = await host.store.addSigningKey(await newSigningKey(host, alg), { now, activatesAt, reason: 'rotated' });
      await host.keys?.reload();
      host.onKeysChanged?.();
      return { kid: key.kid, alg: key.alg, published_at: now.toISOString(), activates_at: activatesAt.toISOString() };
    }
    case 'keys.retire': {
      const keys = await host.store.listSigningKeys();
      const target = keys.find((k) => k.kid === request.kid && k.retiredAt === null);
      if (!target) throw new TesseraError('not_found', `No live key "${request.kid}".`);
      const othersActive = keys.some((k) => k.kid !== target.kid && k.retiredAt === null && k.alg === target.alg && k.activatesAt <= now);
      let replacement: string | undefined;
      if (!othersActive) {
        // Emergency: the retired key was the one signing. A replacement signs at once;
        // verifiers meet its kid and refetch the JWKS (that is what unknown-kid refetch is for).
        const key = await host.store.addSigningKey(await newSigningKey(host, target.alg as SigningAlgorithm), { now, activatesAt: now, reason: `replacing retired key ${target.kid}` });
        replacement = key.kid;
      }
      await host.store.retireSigningKey(target.kid, now);
      await host.keys?.reload();
      host.onKeysChanged?.();
      return { retired: target.kid, replacement: replacement ?? null };
    }
    case 'token.verify':
      return verifyAgainstRing(host, request.token);
    case 'migrations':
      return migrationState(host.store.db);
    case 'audit': {
      const since = request.since === undefined ? undefined : new Date(request.since);
      if (since && Number.isNaN(since.getTime())) throw new TesseraError('invalid_request', '--since must be an ISO time like 2026-01-31T12:00:00Z.');
      const limit = request.limit ?? 50;
      if (!Number.isInteger(limit) || limit < 1 || limit > 10_000) throw new TesseraError('invalid_request', '--limit must be 1..10000.');
      const rows = await host.store.listAudit({ username: request.username, event: request.event as AuditEventName | undefined, since, limit });
      return rows.map((e) => ({
        id: e.id,
        at: e.at.toISOString(),
        event: e.event,
        user_id: e.userId,
        username: e.username,
        session_id: e.sessionId,
        ip: e.ip,
        user_agent: e.userAgent,
        outcome: e.outcome,
        reason: e.reason,
      }));
    }
    default:
      throw new TesseraError('invalid_request', 'Unknown operation.');
  }
}

async function newestAlg(store: Store): Promise<SigningAlgorithm | undefined> {
  const keys = (await store.listSigningKeys()).filter((k) => k.retiredAt === null);
  return keys.at(-1)?.alg as SigningAlgorithm | undefined;
}

/** Checks a token's signature against the published keys and its session in the store. */
async function verifyAgainstRing(host: AdminHost, token: string): Promise<unknown> {
  let typ: unknown;
  try {
    typ = decodeProtectedHeader(token).typ;
    decodeJwt(token);
  } catch {
    return { valid: false, error: 'invalid_token', reason: 'not a JWT' };
  }
  const keys = (await host.store.listSigningKeys()).filter((k) => k.retiredAt === null);
  const jwks = createLocalJWKSet({ keys: keys.map((k) => ({ ...k.publicJwk, kid: k.kid, alg: k.alg, use: 'sig' })) });
  try {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      algorithms: [...SIGNING_ALGORITHMS],
      typ: typ === REFRESH_TOKEN_TYPE ? REFRESH_TOKEN_TYPE : ACCESS_TOKEN_TYPE,
      currentDate: new Date(host.now()),
      requiredClaims: ['sub', 'exp', 'iat', 'jti', 'sid'],
    });
    const found = await host.store.getSessionWithUser(String(payload.sid));
    const session = found
      ? { id: found.session.id, revoked: found.session.revokedAt !== null, revoked_reason: found.session.revokedReason, expires_at: found.session.expiresAt.toISOString() }
      : null;
    const live = session !== null && !session.revoked && found?.user != null && found.user.disabledAt === null;
    return { valid: live, error: live ? null : 'token_revoked', header: protectedHeader, claims: payload, session };
  } catch (error) {
    return { valid: false, error: error instanceof errors.JWTExpired ? 'token_expired' : 'invalid_token', reason: (error as Error).message };
  }
}

/** A new key, sealed when the host has a key-encryption key; never a plaintext key beside sealed ones. */
async function newSigningKey(host: AdminHost, alg: SigningAlgorithm) {
  const sealed = (await host.store.listSigningKeys()).find((k) => isSealed(k.privateJwk));
  if (sealed && !host.keyEncryptionKey) {
    throw new TesseraError(
      'invalid_request',
      'The signing keys are sealed: a new key would be written in the clear. Give --key-encryption-key (or TESSERA_KEY_ENCRYPTION_KEY).',
    );
  }
  // A new key sealed with another key-encryption key would stop every server that has the right one.
  if (sealed) {
    await openPrivateJwk(sealed.privateJwk, host.keyEncryptionKey, sealed.kid).catch(() => {
      throw new TesseraError('invalid_request', 'This key-encryption key does not open the signing keys already sealed: nothing was changed.');
    });
  }
  return generateSigningKey(alg, host.keyEncryptionKey);
}
