export {
  type AuthClient,
  AuthClientError,
  type AuthClientOptions,
  type AuthEvents,
  createAuthClient,
  type LogoutReason,
  RETRYABLE_TOKEN_CODES,
  type Session,
  type TokenStorage,
} from './create_auth_client.js';
export type { AddPasskeyOptions, Passkey, PasskeyLoginOptions } from './passkeys.js';
