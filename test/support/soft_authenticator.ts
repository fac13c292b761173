import { createHash, generateKeyPairSync, type KeyObject, randomBytes, sign } from 'node:crypto';

/*
 * A software WebAuthn authenticator for tests: ES256 keys from node:crypto, 'none'
 * attestation, discoverable credentials, and the few CBOR structures that needs,
 * encoded here by hand (an encoder of its own, so a bug in the server's CBOR library
 * cannot hide behind the same bug in the test's). It answers the server's options as
 * a browser plus authenticator would, and can be told to misbehave: sign for another
 * origin or RP ID, answer another challenge, skip user verification, report a chosen
 * signature counter, or be copied (a cloned authenticator).
 */

/** The subset of PublicKeyCredentialCreationOptionsJSON the authenticator reads. */
export interface CreationOptionsJSON {
  challenge: string;
  rp: { id?: string; name: string };
  user: { id: string; name: string; displayName: string };
  pubKeyCredParams: { alg: number; type: string }[];
  excludeCredentials?: { id: string; type: string; transports?: string[] }[];
}

/** The subset of PublicKeyCredentialRequestOptionsJSON the authenticator reads. */
export interface RequestOptionsJSON {
  challenge: string;
  rpId?: string;
  allowCredentials?: { id: string; type: string; transports?: string[] }[];
  userVerification?: string;
}

export interface RegistrationResponseJSON {
  id: string;
  rawId: string;
  type: 'public-key';
  response: {
    clientDataJSON: string;
    attestationObject: string;
    authenticatorData: string;
    transports: string[];
    publicKeyAlgorithm: number;
    publicKey: string;
  };
  authenticatorAttachment: 'platform' | 'cross-platform';
  clientExtensionResults: Record<string, unknown>;
}

export interface AuthenticationResponseJSON {
  id: string;
  rawId: string;
  type: 'public-key';
  response: { clientDataJSON: string; authenticatorData: string; signature: string; userHandle?: string };
  authenticatorAttachment: 'platform' | 'cross-platform';
  clientExtensionResults: Record<string, unknown>;
}

/** How a ceremony may be bent. Unset: as a well-behaved browser and authenticator do it. */
export interface CeremonyOverrides {
  /** The origin written into clientDataJSON (default: the authenticator's origin). */
  origin?: string;
  /** The RP ID whose hash the authenticator data carries (default: the options', else the origin's host). */
  rpId?: string;
  /** The challenge written into clientDataJSON (default: the options'). */
  challenge?: string;
  /** Whether the user was verified (the UV flag; default true). */
  userVerified?: boolean;
  /** clientDataJSON's `type` (default webauthn.create / webauthn.get). */
  type?: string;
}

export interface AssertionOverrides extends CeremonyOverrides {
  /** Which credential to use (default: the first allowed one this authenticator holds). */
  credentialId?: string;
  /** The signature counter to report (and keep); default: the next one. */
  counter?: number;
  /** The user handle to report (default: the credential's; null: leave it out). */
  userHandle?: string | null;
}

interface Credential {
  id: Buffer;
  privateKey: KeyObject;
  publicKey: KeyObject;
  rpId: string;
  userHandle: string;
  counter: number;
}

const FLAG_UP = 0x01;
const FLAG_UV = 0x04;
const FLAG_BE = 0x08;
const FLAG_BS = 0x10;
const FLAG_AT = 0x40;
const ES256 = -7;
/** A made-up AAGUID: 16 bytes the server records but does not trust. */
const AAGUID = Buffer.from('5e57a3f1c0de4b1dbeefcafe00112233', 'hex');

export class SoftAuthenticator {
  readonly origin: string;
  /** `increment` (a security key: every signature counts up) or `zero` (a synced passkey: always 0). */
  readonly counterMode: 'increment' | 'zero';
  /** Whether credentials claim to be backed up (synced). */
  readonly backedUp: boolean;
  readonly #credentials = new Map<string, Credential>();

  constructor(options: { origin: string; counterMode?: 'increment' | 'zero'; backedUp?: boolean }) {
    this.origin = new URL(options.origin).origin;
    this.counterMode = options.counterMode ?? 'increment';
    this.backedUp = options.backedUp ?? false;
  }

  /** The ids (base64url) of the credentials held. */
  get credentialIds(): string[] {
    return [...this.#credentials.keys()];
  }

  /** The current signature counter of a credential. */
  counterOf(credentialId: string): number {
    return this.#credential(credentialId).counter;
  }

  /** A copy holding the same keys and counters, which then count on their own: a cloned authenticator. */
  clone(): SoftAuthenticator {
    const copy = new SoftAuthenticator({ origin: this.origin, counterMode: this.counterMode, backedUp: this.backedUp });
    for (const [id, c] of this.#credentials) copy.#credentials.set(id, { ...c });
    return copy;
  }

  /** navigator.credentials.create(): a new discoverable ES256 credential, 'none' attestation. */
  register(options: CreationOptionsJSON, overrides: CeremonyOverrides = {}): RegistrationResponseJSON {
    if (!options.pubKeyCredParams.some((p) => p.alg === ES256)) throw new Error('soft authenticator: the options do not offer ES256');
    const rpId = overrides.rpId ?? options.rp.id ?? new URL(this.origin).hostname;
    for (const excluded of options.excludeCredentials ?? []) {
      if (this.#credentials.get(excluded.id)?.rpId === rpId) throw new Error('soft authenticator: InvalidStateError (a credential in excludeCredentials is here)');
    }
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const id = randomBytes(32);
    const counter = 0;
    const credential: Credential = { id, privateKey, publicKey, rpId, userHandle: options.user.id, counter };
    const clientDataJSON = this.#clientData(overrides.type ?? 'webauthn.create', overrides.challenge ?? options.challenge, overrides.origin);
    const authData = Buffer.concat([
      this.#authDataHead(rpId, FLAG_AT | this.#flags(overrides), counter),
      AAGUID,
      u16(id.length),
      id,
      coseKey(publicKey),
    ]);
    const attestationObject = cbor(new Map<string, CborValue>([['fmt', 'none'], ['attStmt', new Map()], ['authData', authData]]));
    this.#credentials.set(b64(id), credential);
    return {
      id: b64(id),
      rawId: b64(id),
      type: 'public-key',
      response: {
        clientDataJSON: b64(clientDataJSON),
        attestationObject: b64(attestationObject),
        authenticatorData: b64(authData),
        transports: ['hybrid', 'internal'],
        publicKeyAlgorithm: ES256,
        publicKey: b64(publicKey.export({ type: 'spki', format: 'der' })),
      },
      authenticatorAttachment: 'platform',
      clientExtensionResults: { credProps: { rk: true } },
    };
  }

  /** navigator.credentials.get(): an assertion by a credential the options allow (any of this RP's when none are listed). */
  authenticate(options: RequestOptionsJSON, overrides: AssertionOverrides = {}): AuthenticationResponseJSON {
    const rpId = options.rpId ?? new URL(this.origin).hostname;
    const allowed = (options.allowCredentials ?? []).map((c) => c.id);
    const credentialId =
      overrides.credentialId ??
      [...this.#credentials.entries()].find(([id, c]) => c.rpId === rpId && (allowed.length === 0 || allowed.includes(id)))?.[0];
    if (credentialId === undefined) throw new Error('soft authenticator: NotAllowedError (no credential for these options)');
    const credential = this.#credential(credentialId);
    credential.counter = overrides.counter ?? (this.counterMode === 'zero' ? 0 : credential.counter + 1);
    const clientDataJSON = this.#clientData(overrides.type ?? 'webauthn.get', overrides.challenge ?? options.challenge, overrides.origin);
    const authData = this.#authDataHead(overrides.rpId ?? credential.rpId, this.#flags(overrides), credential.counter);
    // ES256 as WebAuthn has it: ECDSA P-256 with SHA-256 over authData ‖ SHA-256(clientDataJSON), DER-encoded.
    const signature = sign('sha256', Buffer.concat([authData, sha256(clientDataJSON)]), credential.privateKey);
    const userHandle = overrides.userHandle === undefined ? credential.userHandle : overrides.userHandle;
    return {
      id: credentialId,
      rawId: credentialId,
      type: 'public-key',
      response: {
        clientDataJSON: b64(clientDataJSON),
        authenticatorData: b64(authData),
        signature: b64(signature),
        ...(userHandle === null ? {} : { userHandle }),
      },
      authenticatorAttachment: 'platform',
      clientExtensionResults: {},
    };
  }

  #credential(id: string): Credential {
    const credential = this.#credentials.get(id);
    if (!credential) throw new Error(`soft authenticator: no credential ${id}`);
    return credential;
  }

  #flags(overrides: CeremonyOverrides): number {
    let flags = FLAG_UP;
    if (overrides.userVerified !== false) flags |= FLAG_UV;
    if (this.backedUp) flags |= FLAG_BE | FLAG_BS;
    return flags;
  }

  #clientData(type: string, challenge: string, origin: string | undefined): Buffer {
    return Buffer.from(JSON.stringify({ type, challenge, origin: origin ?? this.origin, crossOrigin: false }), 'utf8');
  }

  /** rpIdHash ‖ flags ‖ signCount (big-endian). */
  #authDataHead(rpId: string, flags: number, counter: number): Buffer {
    const count = Buffer.alloc(4);
    count.writeUInt32BE(counter >>> 0);
    return Buffer.concat([sha256(Buffer.from(rpId, 'utf8')), Buffer.from([flags]), count]);
  }
}

/** The COSE_Key of an EC2 P-256 public key: {1: 2 (EC2), 3: -7 (ES256), -1: 1 (P-256), -2: x, -3: y}. */
function coseKey(publicKey: KeyObject): Buffer {
  const jwk = publicKey.export({ format: 'jwk' });
  return cbor(
    new Map<number, CborValue>([
      [1, 2],
      [3, ES256],
      [-1, 1],
      [-2, Buffer.from(jwk.x!, 'base64url')],
      [-3, Buffer.from(jwk.y!, 'base64url')],
    ]),
  );
}

// ---------------------------------------------------------------- CBOR (RFC 8949), the few types needed

type CborValue = number | string | Uint8Array | Map<number | string, CborValue>;

function cbor(value: CborValue): Buffer {
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error('cbor: integers only');
    return value >= 0 ? head(0, value) : head(1, -1 - value);
  }
  if (typeof value === 'string') {
    const bytes = Buffer.from(value, 'utf8');
    return Buffer.concat([head(3, bytes.length), bytes]);
  }
  if (value instanceof Uint8Array) return Buffer.concat([head(2, value.length), value]);
  const parts: Buffer[] = [head(5, value.size)];
  for (const [k, v] of value) parts.push(cbor(k), cbor(v));
  return Buffer.concat(parts);
}

/** A major type and its argument, in the shortest form. */
function head(major: number, n: number): Buffer {
  const m = major << 5;
  if (n < 24) return Buffer.from([m | n]);
  if (n < 0x100) return Buffer.from([m | 24, n]);
  if (n < 0x10000) return Buffer.from([m | 25, n >> 8, n & 0xff]);
  const b = Buffer.alloc(5);
  b[0] = m | 26;
  b.writeUInt32BE(n, 1);
  return b;
}

function u16(n: number): Buffer {
  return Buffer.from([n >> 8, n & 0xff]);
}

function sha256(data: Uint8Array): Buffer {
  return createHash('sha256').update(data).digest();
}

function b64(data: Uint8Array): string {
  return Buffer.from(data).toString('base64url');
}
