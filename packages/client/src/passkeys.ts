import type {
  AuthenticationResponseJSON,
  PublicKeyCredentialCreationOptionsJSON,
  PublicKeyCredentialRequestOptionsJSON,
  RegistrationResponseJSON,
} from '@simplewebauthn/browser';

/** A passkey as the server lists it after adding one. */
export interface Passkey {
  id: string;
  /** The name given, or the server's `Passkey N`. */
  name: string;
  /** ISO 8601. */
  createdAt: string;
}

export interface PasskeyLoginOptions {
  /**
   * Offer only this account's passkeys. Without it (the default) the browser offers
   * every passkey it holds for this site (discoverable credentials): no name to type.
   */
  username?: string;
}

export interface AddPasskeyOptions {
  /** 1 to 64 printable characters; the server names it `Passkey N` without one. */
  name?: string;
  /**
   * The account's password: the server asks for it (401 `invalid_credentials`) when
   * the session signed in more than 10 minutes ago.
   */
  currentPassword?: string;
}

/** The two WebAuthn ceremonies, as `@simplewebauthn/browser` runs them. */
interface Ceremonies {
  startAuthentication(args: { optionsJSON: PublicKeyCredentialRequestOptionsJSON }): Promise<AuthenticationResponseJSON>;
  startRegistration(args: { optionsJSON: PublicKeyCredentialCreationOptionsJSON }): Promise<RegistrationResponseJSON>;
}

/** How the ceremonies reach the server: the client's own calls, and its error mapping. */
export interface PasskeyCalls {
  /** POSTs JSON to a path of the auth server. */
  post(path: string, json?: unknown): Promise<Response>;
  /** The error a failed response becomes (an `AuthClientError`). */
  failure(response: Response): Promise<Error>;
}

let ceremonies: Promise<Ceremonies> | undefined;

/**
 * `@simplewebauthn/browser`, imported on first use only: bundlers split it into its own
 * chunk, so an app that never uses passkeys never downloads it. A failed load (offline)
 * is tried again next time.
 */
function loadCeremonies(): Promise<Ceremonies> {
  ceremonies ??= import('@simplewebauthn/browser').then(
    (m) => ({ startAuthentication: m.startAuthentication, startRegistration: m.startRegistration }),
    (error: unknown) => {
      ceremonies = undefined;
      throw error;
    },
  );
  return ceremonies;
}

/**
 * The assertion for a passkey sign-in: the server's options, then the browser's
 * `navigator.credentials.get()`. Rejects with the server's error, or the browser's
 * (a `NotAllowedError` when the user cancels or has no passkey here).
 */
export async function passkeyAssertion(calls: PasskeyCalls, options: PasskeyLoginOptions = {}): Promise<AuthenticationResponseJSON> {
  const res = await calls.post('/auth/passkeys/login/options', options.username === undefined ? {} : { username: options.username });
  if (!res.ok) throw await calls.failure(res);
  const optionsJSON = (await res.json()) as PublicKeyCredentialRequestOptionsJSON;
  const { startAuthentication } = await loadCeremonies();
  return startAuthentication({ optionsJSON });
}

/**
 * Adds a passkey to the signed-in account: the server's options, the browser's
 * `navigator.credentials.create()`, and the new credential sent back.
 */
export async function addPasskey(calls: PasskeyCalls, options: AddPasskeyOptions = {}): Promise<Passkey> {
  const res = await calls.post('/auth/passkeys/register/options', options.currentPassword === undefined ? undefined : { current_password: options.currentPassword });
  if (!res.ok) throw await calls.failure(res);
  const optionsJSON = (await res.json()) as PublicKeyCredentialCreationOptionsJSON;
  const { startRegistration } = await loadCeremonies();
  const response = await startRegistration({ optionsJSON });
  const added = await calls.post('/auth/passkeys/register', { response, ...(options.name === undefined ? {} : { name: options.name }) });
  if (!added.ok) throw await calls.failure(added);
  const body = (await added.json()) as { id: string; name: string; created_at: string };
  return { id: body.id, name: body.name, createdAt: body.created_at };
}
