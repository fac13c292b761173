import { createHmac, hkdfSync, randomBytes, randomUUID } from 'node:crypto';
import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
  verifyAuthenticationResponse,
  verifyRegistrationResponse,
} from '@simplewebauthn/server';
import { TesseraError } from '@tessera/protocol';
import type { PasskeyRecord } from '../store/passkeys_store.js';
import type { ClientInfo, UserRecord } from '../store/records.js';
import type { Authenticated } from './authenticate.js';
import type { AuthContext } from './context.js';
import type { IssuedPair } from './issue_token_pair.js';
import { openSession } from './login.js';
import { checkIpLimit } from './rate_limits.js';

/**
 * The WebAuthn library (15 MB of memory once loaded), loaded by the first passkey
 * ceremony: a server whose users never add one does not carry it.
 */
let webauthnModule: Promise<typeof import('@simplewebauthn/server')> | undefined;
function webauthn(): Promise<typeof import('@simplewebauthn/server')> {
  webauthnModule ??= import('@simplewebauthn/server');
  return webauthnModule;
}

/** How long a ceremony's challenge lives (and the `timeout` the options give the browser). */
export const PASSKEY_CHALLENGE_TTL_SECONDS = 300;
/** Passkeys one user may have: bounds the options' credential lists and the table. */
export const MAX_PASSKEYS = 20;
/**
 * A passkey's name: 1 to 64 characters (code points; the schema gives the length), none
 * of them a control, format (bidi overrides, zero-width: a name must read as it is,
 * save the joiner inside emoji sequences), surrogate or private-use character, nor a
 * line break, and no space at either end.
 */
export const PASSKEY_NAME_PATTERN =
  '^[^\\s\\p{Cc}\\p{Cf}\\p{Cs}\\p{Co}](?:(?:[^\\p{Cc}\\p{Cf}\\p{Cs}\\p{Co}\\p{Zl}\\p{Zp}]|\\u200D)*[^\\s\\p{Cc}\\p{Cf}\\p{Cs}\\p{Co}])?$';
export const PASSKEY_NAME_MAX_LENGTH = 64;
const PASSKEY_NAME = new RegExp(PASSKEY_NAME_PATTERN, 'u');
const NAME_MESSAGE = `A passkey name is 1 to ${PASSKEY_NAME_MAX_LENGTH} printable characters, without spaces at either end.`;

const RP_NAME = 'Tessera';
/** EdDSA, ES256, RS256: what authenticators offer, pinned so that options and verification agree on every instance. */
const ALGORITHMS = [-8, -7, -257];
/** The transports WebAuthn defines; anything else a client reports is dropped, not stored. */
const TRANSPORTS: ReadonlySet<string> = new Set(['ble', 'cable', 'hybrid', 'internal', 'nfc', 'smart-card', 'usb']);
/** Our challenges are 32 random bytes, base64url: anything else is no challenge of ours (and never reaches SQL). */
const CHALLENGE_SHAPE = /^[A-Za-z0-9_-]{43}$/;
/** A credential id: at most 1023 bytes (WebAuthn §5.8.3), base64url. */
const CREDENTIAL_ID_SHAPE = /^[A-Za-z0-9_-]{1,1366}$/;
/** Transports decoy credentials claim, as real ones report them. */
const DECOY_TRANSPORTS = [['hybrid', 'internal'], ['internal'], ['usb'], ['hybrid', 'internal'], ['nfc', 'usb']];

/**
 * User verification is required at every ceremony. A passkey here is a whole login,
 * with no second factor asked (amr ["hwk"]): it must be two factors by itself, the
 * authenticator (possession) unlocked by a PIN or biometrics (UV). Without UV a found
 * security key alone would open the account, and a user who set up an authenticator
 * app would be downgraded to one factor. Registration options keep `preferred` (every
 * passkey provider verifies anyway); the verification below refuses a credential whose
 * authenticator did not, rather than store one that could never sign in.
 */
const REQUIRE_USER_VERIFICATION = true;

/** The relying party: the host users see (`--public-url`, the issuer by default). */
function relyingParty(ctx: AuthContext): { id: string; origin: string } {
  const url = new URL(ctx.publicUrl());
  return { id: url.hostname, origin: url.origin };
}

/** The WebAuthn user handle: the user id's 16 bytes (no name, nothing personal). */
function userHandleBytes(userId: string): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.from(userId.replaceAll('-', ''), 'hex'));
}

/**
 * Options to create a passkey for the signed-in user: a discoverable credential (so it
 * can sign in without a username), bound to this user, none it already has.
 */
export async function passkeyRegistrationOptions(ctx: AuthContext, auth: Authenticated): Promise<PublicKeyCredentialCreationOptionsJSON> {
  const existing = await ctx.store.passkeys.list(auth.user.id);
  if (existing.length >= MAX_PASSKEYS) throw new TesseraError('invalid_request', `At most ${MAX_PASSKEYS} passkeys: remove one first.`);
  const rp = relyingParty(ctx);
  const { generateRegistrationOptions } = await webauthn();
  const options = await generateRegistrationOptions({
    rpName: RP_NAME,
    rpID: rp.id,
    userName: auth.user.username,
    userDisplayName: auth.user.username,
    userID: userHandleBytes(auth.user.id),
    challenge: new Uint8Array(randomBytes(32)),
    timeout: PASSKEY_CHALLENGE_TTL_SECONDS * 1000,
    attestationType: 'none',
    excludeCredentials: existing.map((p) => ({ id: p.credentialId, transports: p.transports })),
    authenticatorSelection: { residentKey: 'required', userVerification: 'preferred' },
    supportedAlgorithmIDs: ALGORITHMS,
  });
  await storeChallenge(ctx, options.challenge, 'registration', auth.user.id);
  return options;
}

/**
 * Verifies a new credential against a live registration challenge of this user and
 * stores it (`passkey.added`). Any flaw (challenge unknown, used, expired or someone
 * else's; wrong origin or RP; no user verification; a bad attestation) is `invalid_code`
 * and changes nothing.
 */
export async function registerPasskey(
  ctx: AuthContext,
  auth: Authenticated,
  input: { response: RegistrationResponseJSON; name?: string; client: ClientInfo },
): Promise<PasskeyRecord> {
  const name = input.name === undefined ? undefined : checkPasskeyName(input.name);
  const now = new Date(ctx.now());
  const challenge = challengeOf(input.response);
  const live = challenge ? await ctx.store.passkeys.liveChallenge(challenge, 'registration', now) : null;
  // A login challenge, another user's registration: as unknown as a made-up one.
  if (!challenge || !live || live.userId !== auth.user.id) throw staleCeremony();
  const rp = relyingParty(ctx);
  let info: Awaited<ReturnType<typeof verifyRegistrationResponse>>['registrationInfo'];
  try {
    const { verifyRegistrationResponse } = await webauthn();
    const verified = await verifyRegistrationResponse({
      response: input.response,
      expectedChallenge: (c) => c === challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      requireUserVerification: REQUIRE_USER_VERIFICATION,
      supportedAlgorithmIDs: ALGORITHMS,
    });
    info = verified.verified ? verified.registrationInfo : undefined;
  } catch (error) {
    logRefusal(ctx, 'registration', error);
  }
  // The id the client names must be the one the authenticator signed for.
  if (!info || info.credential.id !== input.response.id) throw notAccepted();
  const result = await ctx.store.passkeys.add({
    userId: auth.user.id,
    username: auth.user.username,
    passkey: {
      id: randomUUID(),
      credentialId: info.credential.id,
      publicKey: Buffer.from(info.credential.publicKey).toString('base64url'),
      counter: info.credential.counter,
      transports: [...new Set((input.response.response.transports ?? []).filter((t) => TRANSPORTS.has(t)))],
      deviceType: info.credentialDeviceType,
      backedUp: info.credentialBackedUp,
    },
    name,
    challenge,
    max: MAX_PASSKEYS,
    now,
    audit: { ip: input.client.ip, userAgent: input.client.userAgent, sessionId: auth.session.id },
  });
  switch (result) {
    case 'challenge':
      throw staleCeremony();
    case 'duplicate':
      throw new TesseraError('invalid_code', 'This passkey is registered already.');
    case 'too_many':
      throw new TesseraError('invalid_request', `At most ${MAX_PASSKEYS} passkeys: remove one first.`);
    case 'gone':
    case 'counter':
      throw new TesseraError('token_revoked');
    default:
      return result;
  }
}

/**
 * Options to sign in with a passkey. Without a username: discoverable credentials, the
 * authenticator offers what it holds for this site. With one: that user's credentials,
 * and for a name that has none (unknown, or a user without passkeys) decoys derived
 * from the name, stable across calls, so the answer never tells whether an account exists.
 */
export async function passkeyLoginOptions(ctx: AuthContext, input: { username?: string; client: ClientInfo }): Promise<PublicKeyCredentialRequestOptionsJSON> {
  await checkIpLimit(ctx, input.client);
  let userId: string | null = null;
  let allowCredentials: { id: string; transports: string[] }[] = [];
  if (input.username !== undefined) {
    const name = input.username.normalize('NFKC');
    // A name no account can have is simply unknown (as login treats it).
    const found = name.length <= 64 && !name.includes('\u0000') ? await ctx.store.passkeys.credentialsOf(name) : null;
    userId = found?.userId ?? null;
    allowCredentials = found?.credentials.length
      ? found.credentials.map((c) => ({ id: c.credentialId, transports: c.transports }))
      : decoyCredentials(ctx, name);
  }
  const { generateAuthenticationOptions } = await webauthn();
  const options = await generateAuthenticationOptions({
    rpID: relyingParty(ctx).id,
    allowCredentials,
    challenge: new Uint8Array(randomBytes(32)),
    timeout: PASSKEY_CHALLENGE_TTL_SECONDS * 1000,
    userVerification: REQUIRE_USER_VERIFICATION ? 'required' : 'preferred',
  });
  await storeChallenge(ctx, options.challenge, 'authentication', userId, input.username !== undefined);
  return options;
}

/**
 * A login with a passkey: a whole login (amr ["hwk"]), no second factor asked. The
 * assertion must answer a live authentication challenge (bound to the credential's user
 * when the options named one), come from our origin for our RP ID with user
 * verification, carry a valid signature by a registered credential, and a signature
 * counter that moved on. Only then does a disabled account learn it is disabled.
 * Every attempt counts against the client's address; failures are audited.
 */
export async function loginWithPasskey(
  ctx: AuthContext,
  input: { response: AuthenticationResponseJSON; client: ClientInfo; dpopJkt?: string },
): Promise<IssuedPair> {
  await checkIpLimit(ctx, input.client);
  const now = new Date(ctx.now());
  const failed = async (reason: string, user: UserRecord | null, error = notAccepted()): Promise<TesseraError> => {
    await ctx.store.audit.append(now, [
      { event: 'login.failed', outcome: 'failure', userId: user?.id ?? null, username: user?.username ?? null, ip: input.client.ip, userAgent: input.client.userAgent, reason },
    ]);
    return error;
  };

  const challenge = challengeOf(input.response);
  const live = challenge ? await ctx.store.passkeys.liveChallenge(challenge, 'authentication', now) : null;
  if (!challenge || !live) throw await failed('passkey_challenge', null, staleCeremony());
  const passkey = CREDENTIAL_ID_SHAPE.test(input.response.id) ? await ctx.store.passkeys.findByCredentialId(input.response.id) : null;
  const user = passkey ? await ctx.store.users.findById(passkey.userId) : null;
  if (!passkey || !user) throw await failed('passkey_unknown', null);
  // Options asked for a name answer only to that account's passkeys, and to none when
  // the name is unknown: the same refusal either way, so no name is confirmed.
  if ((live.userId !== null || live.named) && live.userId !== user.id) throw await failed('passkey_challenge', user, staleCeremony());
  // A discoverable credential says whose it is: that must be the user it is registered to.
  const handle = input.response.response.userHandle;
  if (handle !== undefined && handle !== null && handle !== Buffer.from(userHandleBytes(user.id)).toString('base64url')) {
    throw await failed('passkey_user_handle', user);
  }

  const rp = relyingParty(ctx);
  let verified: Awaited<ReturnType<typeof verifyAuthenticationResponse>> | undefined;
  try {
    const { verifyAuthenticationResponse } = await webauthn();
    verified = await verifyAuthenticationResponse({
      response: input.response,
      expectedChallenge: (c) => c === challenge,
      expectedOrigin: rp.origin,
      expectedRPID: rp.id,
      // Counter 0 here: the library would compare before checking the signature, and a
      // clone is told apart from a forgery only by a valid signature. We compare below.
      credential: { id: passkey.credentialId, publicKey: new Uint8Array(Buffer.from(passkey.publicKey, 'base64url')), counter: 0, transports: passkey.transports },
      requireUserVerification: REQUIRE_USER_VERIFICATION,
    });
  } catch (error) {
    logRefusal(ctx, 'authentication', error);
  }
  if (!verified?.verified) throw await failed('passkey_invalid', user);
  const { newCounter, credentialBackedUp } = verified.authenticationInfo;

  if (user.disabledAt) throw await failed('account_disabled', user, new TesseraError('account_disabled'));
  const used = await ctx.store.passkeys.use({
    passkeyId: passkey.id,
    challenge,
    counter: newCounter,
    backedUp: credentialBackedUp,
    now,
    accept: (stored) => signCountAccepted(stored.counter, newCounter),
  });
  if (used === 'counter') {
    // A signature counter that did not move on: two authenticators share this key.
    throw await failed('passkey_clone_suspected', user, new TesseraError('invalid_code', 'This passkey was refused: its signature counter went backwards (a copied authenticator?).'));
  }
  if (used === 'challenge') throw await failed('passkey_challenge', user, staleCeremony());
  if (typeof used === 'string') throw await failed('passkey_unknown', user);
  return openSession(ctx, user, input.client, ['hwk'], input.dpopJkt);
}

/**
 * WebAuthn §6.1.1: a signature counter must grow. Authenticators that keep none (synced
 * passkeys) always say 0, and then there is nothing to compare; a counter that stays or
 * falls (or drops to 0) after a non-zero one means a copy of the key signed in between.
 */
export function signCountAccepted(stored: number, received: number): boolean {
  if (stored === 0 && received === 0) return true;
  return received > stored;
}

/** The caller's passkeys, oldest first. */
export function listPasskeys(ctx: AuthContext, auth: Authenticated): Promise<PasskeyRecord[]> {
  return ctx.store.passkeys.list(auth.user.id);
}

/** Renames one of the caller's passkeys; someone else's or an unknown one is `not_found`. */
export async function renamePasskey(ctx: AuthContext, auth: Authenticated, input: { id: string; name: string }): Promise<PasskeyRecord> {
  const name = checkPasskeyName(input.name);
  const renamed = isUuid(input.id) ? await ctx.store.passkeys.rename({ userId: auth.user.id, id: input.id, name }) : null;
  if (!renamed) throw new TesseraError('not_found', 'No such passkey.');
  return renamed;
}

/** Removes one of the caller's passkeys (`passkey.removed`); someone else's or an unknown one is `not_found`. */
export async function removePasskey(ctx: AuthContext, auth: Authenticated, input: { id: string; client: ClientInfo }): Promise<void> {
  const removed = isUuid(input.id)
    ? await ctx.store.passkeys.remove({
        userId: auth.user.id,
        username: auth.user.username,
        id: input.id,
        now: new Date(ctx.now()),
        audit: { ip: input.client.ip, userAgent: input.client.userAgent, sessionId: auth.session.id },
      })
    : null;
  if (!removed) throw new TesseraError('not_found', 'No such passkey.');
}

export function checkPasskeyName(name: string): string {
  if ([...name].length > PASSKEY_NAME_MAX_LENGTH || !PASSKEY_NAME.test(name)) throw new TesseraError('invalid_request', NAME_MESSAGE);
  return name;
}

async function storeChallenge(ctx: AuthContext, challenge: string, purpose: 'registration' | 'authentication', userId: string | null, named = false): Promise<void> {
  const now = ctx.now();
  await ctx.store.passkeys.createChallenge({ challenge, purpose, userId, named, now: new Date(now), expiresAt: new Date(now + PASSKEY_CHALLENGE_TTL_SECONDS * 1000) });
}

/** The challenge a response answers, read from its client data; null when there is none of our shape. */
function challengeOf(response: { response: { clientDataJSON: string } }): string | null {
  try {
    const data = JSON.parse(Buffer.from(response.response.clientDataJSON, 'base64url').toString('utf8')) as { challenge?: unknown } | null;
    const challenge = data?.challenge;
    return typeof challenge === 'string' && CHALLENGE_SHAPE.test(challenge) ? challenge : null;
  } catch {
    return null;
  }
}

/**
 * Plausible credential descriptors for a name without passkeys: an HMAC of the name, so
 * the same name always gets the same ones. Keyed by the key-encryption key when there is
 * one (the same decoys on every instance and after restarts), else by a key of this process.
 */
function decoyCredentials(ctx: AuthContext, username: string): { id: string; transports: string[] }[] {
  const key = decoyKey(ctx);
  const name = username.toLowerCase();
  const seed = createHmac('sha256', key).update(name).digest();
  const count = seed[0]! < 192 ? 1 : 2;
  return Array.from({ length: count }, (_, i) => {
    const bytes = createHmac('sha256', key).update(`${name}\u0000${i}`).digest();
    const length = [16, 20, 32][seed[1 + i]! % 3]!;
    return { id: bytes.subarray(0, length).toString('base64url'), transports: DECOY_TRANSPORTS[seed[3 + i]! % DECOY_TRANSPORTS.length]! };
  });
}

const decoyKeys = new WeakMap<AuthContext, Buffer>();
function decoyKey(ctx: AuthContext): Buffer {
  let key = decoyKeys.get(ctx);
  if (!key) {
    const kek = ctx.config.keyEncryptionKey;
    key = kek ? Buffer.from(hkdfSync('sha256', kek, new Uint8Array(0), 'tessera passkey decoys', 32)) : randomBytes(32);
    decoyKeys.set(ctx, key);
  }
  return key;
}

/** The library's reason is for the operator (a wrong --public-url shows up here), never the client. */
function logRefusal(ctx: AuthContext, ceremony: string, error: unknown): void {
  const reason = error instanceof Error ? error.message.slice(0, 300) : 'unreadable response';
  ctx.log.info({ passkey: { ceremony, reason } }, 'passkey response refused');
}

function staleCeremony(): TesseraError {
  return new TesseraError('invalid_code', 'This passkey ceremony is unknown, used or expired: start again.');
}

function notAccepted(): TesseraError {
  return new TesseraError('invalid_code', 'The passkey was not accepted.');
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
function isUuid(value: string): boolean {
  return UUID.test(value);
}
