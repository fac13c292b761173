import { ACCESS_TOKEN_TYPE, REFRESH_TOKEN_TYPE, SIGNING_ALGORITHMS, type SigningAlgorithm, TesseraError } from '@tessera/protocol';
import { createLocalJWKSet, decodeJwt, decodeProtectedHeader, errors, type JWTHeaderParameters, type JWTPayload, jwtVerify } from 'jose';
import { type AuditEventView, auditEventView, type UserView, userView } from './account_views.js';
import { OPERATOR } from './flows/actors.js';
import type { AccountsContext } from './flows/context.js';
import { issueResetLink } from './flows/password_reset.js';
import { addUser, listAllUsers, listAuditEvents, removeUser, setDisabled, setPassword, setRoles } from './flows/user_administration.js';
import { isSealed, openPrivateJwk } from './keys/key_encryption.js';
import { generateSigningKey, type KeyRing } from './keys/key_ring.js';
import { migrationState } from './store/migrations.js';
import type { Store } from './store/store.js';

/** What an operator can ask for: the same requests whether the CLI reaches the database or a running server. */
export type AdminRequest =
  | { op: 'user.add'; username: string; password: string; roles?: string[] }
  | { op: 'user.disable'; username: string }
  | { op: 'user.enable'; username: string }
  | { op: 'user.remove'; username: string }
  | { op: 'user.roles'; username: string; roles: string[] }
  | { op: 'user.set-password'; username: string; password: string }
  | { op: 'user.reset-link'; username: string }
  | { op: 'user.list' }
  | { op: 'keys.list' }
  | { op: 'keys.rotate'; alg?: SigningAlgorithm }
  | { op: 'keys.retire'; kid: string }
  | { op: 'token.verify'; token: string }
  | { op: 'audit'; username?: string; event?: string; since?: string; limit?: number }
  | { op: 'migrations' };

export type AdminOp = AdminRequest['op'];

/** A user change as the CLI reports it. */
export interface UserChangeResult {
  id: string;
  username: string;
  sessions_revoked: number;
}

export interface KeyView {
  kid: string;
  alg: string;
  created_at: string;
  activates_at: string;
  retired_at: string | null;
  state: 'retired' | 'signing' | 'pending' | 'expired' | 'published';
  /** Whether the private key is sealed with the key-encryption key at rest. */
  encrypted: boolean;
}

export interface TokenCheck {
  valid: boolean;
  error: 'invalid_token' | 'token_expired' | 'token_revoked' | null;
  reason?: string;
  header?: JWTHeaderParameters;
  claims?: JWTPayload;
  session?: { id: string; revoked: boolean; revoked_reason: string | null; expires_at: string } | null;
}

/** The answer to each operation, by name: the CLI's `call` is typed by these. */
export interface AdminResults {
  'user.add': { id: string; username: string; roles: string[] };
  'user.disable': UserChangeResult & { disabled: true };
  'user.enable': UserChangeResult & { disabled: false };
  'user.remove': UserChangeResult & { removed: true };
  'user.roles': { id: string; username: string; roles: string[] };
  'user.set-password': UserChangeResult;
  'user.reset-link': { id: string; username: string; reset_url: string; mailed: boolean };
  'user.list': UserView[];
  'keys.list': KeyView[];
  'keys.rotate': { kid: string; alg: string; published_at: string; activates_at: string };
  'keys.retire': { retired: string; replacement: string | null };
  'token.verify': TokenCheck;
  audit: AuditEventView[];
  migrations: { applied: number[]; pending: number[] };
}

export const ADMIN_OPS: readonly AdminOp[] = [
  'user.add',
  'user.disable',
  'user.enable',
  'user.remove',
  'user.roles',
  'user.set-password',
  'user.reset-link',
  'user.list',
  'keys.list',
  'keys.rotate',
  'keys.retire',
  'token.verify',
  'audit',
  'migrations',
];

/** Where operations run: the account flows' context and (inside a running server) its live key ring. */
export interface AdminHost extends AccountsContext {
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

type Handlers = { [K in AdminOp]: (host: AdminHost, request: Extract<AdminRequest, { op: K }>) => Promise<AdminResults[K]> };

const HANDLERS: Handlers = {
  async 'user.add'(host, request) {
    const user = await addUser(host, { username: String(request.username ?? ''), password: String(request.password ?? ''), roles: request.roles ?? [], actor: OPERATOR });
    return { id: user.id, username: user.username, roles: user.roles };
  },
  async 'user.disable'(host, request) {
    const { user, revoked } = await setDisabled(host, { user: { username: request.username }, disabled: true, actor: OPERATOR });
    return { id: user.id, username: user.username, disabled: true, sessions_revoked: revoked.length };
  },
  async 'user.enable'(host, request) {
    const { user, revoked } = await setDisabled(host, { user: { username: request.username }, disabled: false, actor: OPERATOR });
    return { id: user.id, username: user.username, disabled: false, sessions_revoked: revoked.length };
  },
  async 'user.remove'(host, request) {
    const { user, revoked } = await removeUser(host, { user: { username: request.username }, actor: OPERATOR });
    return { id: user.id, username: user.username, removed: true, sessions_revoked: revoked.length };
  },
  async 'user.roles'(host, request) {
    const user = await setRoles(host, { user: { username: request.username }, roles: request.roles ?? [], actor: OPERATOR });
    return { id: user.id, username: user.username, roles: user.roles };
  },
  async 'user.set-password'(host, request) {
    const { user, revoked } = await setPassword(host, { user: { username: request.username }, password: String(request.password ?? ''), actor: OPERATOR });
    return { id: user.id, username: user.username, sessions_revoked: revoked.length };
  },
  async 'user.reset-link'(host, request) {
    const { user, resetUrl, mailed } = await issueResetLink(host, { user: { username: request.username }, actor: OPERATOR });
    return { id: user.id, username: user.username, reset_url: resetUrl, mailed };
  },
  async 'user.list'(host) {
    return (await listAllUsers(host)).map(userView);
  },
  async 'keys.list'(host) {
    const now = new Date(host.now());
    const signer = host.keys?.signer.kid;
    const published = new Set(host.keys?.jwks().keys.map((k) => k.kid));
    return (await host.store.keys.list()).map((k) => ({
      kid: k.kid,
      alg: k.alg,
      created_at: k.createdAt.toISOString(),
      activates_at: k.activatesAt.toISOString(),
      retired_at: k.retiredAt?.toISOString() ?? null,
      state: k.retiredAt ? 'retired' : k.kid === signer ? 'signing' : k.activatesAt > now ? 'pending' : host.keys && !published.has(k.kid) ? 'expired' : 'published',
      encrypted: isSealed(k.privateJwk),
    }));
  },
  async 'keys.rotate'(host, request) {
    const now = new Date(host.now());
    const alg = request.alg ?? host.alg ?? (await newestAlg(host.store)) ?? 'RS256';
    if (!SIGNING_ALGORITHMS.includes(alg)) throw new TesseraError('invalid_request', `Unknown algorithm "${alg}".`);
    const activatesAt = new Date(now.getTime() + (host.keyActivationDelay ?? 300) * 1000);
    const key = await host.store.keys.add(await newSigningKey(host, alg), { now, activatesAt, reason: 'rotated' });
    await host.keys?.reload();
    host.onKeysChanged?.();
    return { kid: key.kid, alg: key.alg, published_at: now.toISOString(), activates_at: activatesAt.toISOString() };
  },
  async 'keys.retire'(host, request) {
    const now = new Date(host.now());
    const keys = await host.store.keys.list();
    const target = keys.find((k) => k.kid === request.kid && k.retiredAt === null);
    if (!target) throw new TesseraError('not_found', `No live key "${request.kid}".`);
    const othersActive = keys.some((k) => k.kid !== target.kid && k.retiredAt === null && k.alg === target.alg && k.activatesAt <= now);
    let replacement: string | null = null;
    if (!othersActive) {
      // Emergency: the retired key was the one signing. A replacement signs at once;
      // verifiers meet its kid and refetch the JWKS (that is what unknown-kid refetch is for).
      const key = await host.store.keys.add(await newSigningKey(host, target.alg as SigningAlgorithm), { now, activatesAt: now, reason: `replacing retired key ${target.kid}` });
      replacement = key.kid;
    }
    await host.store.keys.retire(target.kid, now);
    await host.keys?.reload();
    host.onKeysChanged?.();
    return { retired: target.kid, replacement };
  },
  'token.verify': (host, request) => verifyAgainstRing(host, request.token),
  migrations: (host) => migrationState(host.store.db),
  async audit(host, request) {
    const { events } = await listAuditEvents(host, { username: request.username, event: request.event, since: request.since, limit: request.limit ?? 50 });
    return events.map(auditEventView);
  },
};

/**
 * Runs one operator request and returns its JSON-ready result. Bad input is a
 * `TesseraError` (`invalid_request`, `not_found`, `username_taken`, `weak_password`).
 */
export function runAdminOperation<K extends AdminOp>(host: AdminHost, request: Extract<AdminRequest, { op: K }>): Promise<AdminResults[K]> {
  const handler = HANDLERS[request.op] as ((host: AdminHost, request: Extract<AdminRequest, { op: K }>) => Promise<AdminResults[K]>) | undefined;
  if (!handler || !Object.hasOwn(HANDLERS, request.op)) return Promise.reject(new TesseraError('invalid_request', 'Unknown operation.'));
  return handler(host, request);
}

async function newestAlg(store: Store): Promise<SigningAlgorithm | undefined> {
  const keys = (await store.keys.list()).filter((k) => k.retiredAt === null);
  return keys.at(-1)?.alg as SigningAlgorithm | undefined;
}

/** Checks a token's signature against the published keys and its session in the store. */
async function verifyAgainstRing(host: AdminHost, token: string): Promise<TokenCheck> {
  let typ: unknown;
  try {
    typ = decodeProtectedHeader(token).typ;
    decodeJwt(token);
  } catch {
    return { valid: false, error: 'invalid_token', reason: 'not a JWT' };
  }
  const keys = (await host.store.keys.list()).filter((k) => k.retiredAt === null);
  const jwks = createLocalJWKSet({ keys: keys.map((k) => ({ ...k.publicJwk, kid: k.kid, alg: k.alg, use: 'sig' })) });
  try {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      algorithms: [...SIGNING_ALGORITHMS],
      typ: typ === REFRESH_TOKEN_TYPE ? REFRESH_TOKEN_TYPE : ACCESS_TOKEN_TYPE,
      currentDate: new Date(host.now()),
      requiredClaims: ['sub', 'exp', 'iat', 'jti', 'sid'],
    });
    const found = await host.store.sessions.findWithUser(String(payload.sid));
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
  const sealed = (await host.store.keys.list()).find((k) => isSealed(k.privateJwk));
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
