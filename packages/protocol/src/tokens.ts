/** `typ` header of access tokens (RFC 9068). */
export const ACCESS_TOKEN_TYPE = 'at+jwt';
/** `typ` header of refresh tokens: never accepted where an access token is expected. */
export const REFRESH_TOKEN_TYPE = 'refresh+jwt';

/** Signature algorithms a Tessera key ring may sign with; verifiers allow-list these. */
export const SIGNING_ALGORITHMS = ['RS256', 'PS256', 'ES256', 'EdDSA'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];

/** Claims of a Tessera access token. */
export interface AccessTokenClaims {
  iss: string;
  /** The user id, as a string. */
  sub: string;
  aud: string | string[];
  exp: number;
  iat: number;
  jti: string;
  /** The session id. */
  sid: string;
  username: string;
  roles: string[];
  /** The client the token was issued to (RFC 9068 §2.2; the server's `--client-id`). Absent only in tokens from before it was added. */
  client_id?: string;
  /** Whether the user's email has been verified; present only when the user has an email. */
  email_verified?: boolean;
  /** How the session signed in (RFC 8176): `["pwd"]`, `["pwd", "otp"]`, `["hwk"]` for a passkey. */
  amr?: string[];
  /** Bound to a key (DPoP, RFC 9449): the RFC 7638 thumbprint of the client's key. */
  cnf?: { jkt: string };
}

/** Claims of a Tessera refresh token: ids only, no name and no roles. */
export interface RefreshTokenClaims {
  iss: string;
  sub: string;
  /** The issuer itself: a refresh token is only ever for the auth server. */
  aud: string;
  exp: number;
  iat: number;
  jti: string;
  sid: string;
  /** Bound to a key (DPoP): every refresh needs a proof by it. */
  cnf?: { jkt: string };
}

/** The body of a successful login or refresh. Lifetimes in seconds. */
export interface TokenPair {
  access_token: string;
  /** Left out in cookie mode, where the refresh token travels in an httpOnly cookie. */
  refresh_token?: string;
  /** `DPoP` when the pair is bound to the client's key (send `Authorization: DPoP <token>` with a proof). */
  token_type: 'Bearer' | 'DPoP';
  expires_in: number;
  refresh_expires_in: number;
  session_id: string;
}

/** Refresh cookie name over plain http (local development). */
export const REFRESH_COOKIE = 'tessera_refresh';
/** Refresh cookie name when the cookie is `Secure` (the `__Secure-` prefix binds it to https). */
export const SECURE_REFRESH_COOKIE = '__Secure-tessera_refresh';
