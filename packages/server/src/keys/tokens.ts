import { createHash, randomBytes, randomUUID } from 'node:crypto';
import {
  ACCESS_TOKEN_TYPE,
  type AccessTokenClaims,
  REFRESH_TOKEN_TYPE,
  type RefreshTokenClaims,
  TesseraError,
} from '@tessera/protocol';
import type { KeyRing } from './key_ring.js';
import { signToken } from './token_signer.js';
import { verifySignedToken } from './token_verifier.js';

/** Signs an access token (RFC 9068 `at+jwt`): who, which session, which roles. Nothing secret. */
export async function signAccessToken(
  ring: KeyRing,
  input: { issuer: string; audience: string; clientId: string; userId: string; username: string; roles: string[]; sessionId: string; amr?: readonly string[]; jkt?: string; now: number; ttl: number; emailVerified?: boolean },
): Promise<{ token: string; claims: AccessTokenClaims }> {
  const iat = Math.floor(input.now / 1000);
  const claims: AccessTokenClaims = {
    iss: input.issuer,
    sub: input.userId,
    aud: input.audience,
    exp: iat + input.ttl,
    iat,
    jti: randomUUID(),
    sid: input.sessionId,
    username: input.username,
    roles: input.roles,
    client_id: input.clientId,
    ...(input.emailVerified === undefined ? {} : { email_verified: input.emailVerified }),
    ...(input.amr ? { amr: [...input.amr] } : {}),
    ...(input.jkt ? { cnf: { jkt: input.jkt } } : {}),
  };
  const token = await signToken(ring.signer, ACCESS_TOKEN_TYPE, { ...claims });
  return { token, claims };
}

/** Signs a refresh token: ids only. Its audience is the issuer itself. */
export async function signRefreshToken(
  ring: KeyRing,
  input: { issuer: string; userId: string; sessionId: string; jti: string; issuedAt: Date; expiresAt: Date; jkt?: string },
): Promise<string> {
  const claims: RefreshTokenClaims = {
    iss: input.issuer,
    sub: input.userId,
    aud: input.issuer,
    exp: Math.floor(input.expiresAt.getTime() / 1000),
    iat: Math.floor(input.issuedAt.getTime() / 1000),
    jti: input.jti,
    sid: input.sessionId,
    ...(input.jkt ? { cnf: { jkt: input.jkt } } : {}),
  };
  return signToken(ring.signer, REFRESH_TOKEN_TYPE, { ...claims });
}

/** A fresh refresh token id: 256 random bits. */
export function newRefreshJti(): string {
  return randomBytes(32).toString('base64url');
}

/**
 * The id of the token that replaces `jti`. Derived, not stored: the database
 * keeps hashes only, yet a replay within the grace window can still be answered
 * with the very same successor (same `jti`, same `iat`/`exp`).
 */
export function successorJti(jti: string): string {
  return createHash('sha256').update(`tessera/successor\0${jti}`).digest('base64url');
}

/** What the database keeps of a refresh token: a SHA-256 of its `jti`. */
export function refreshJtiHash(jti: string): string {
  return createHash('sha256').update(`tessera/refresh\0${jti}`).digest('base64url');
}

/**
 * Verifies a token of the given `typ` against the key ring: allow-listed `alg`,
 * known `kid`, `iss`, `aud`, `exp`/`nbf` (5 s tolerance), required claims.
 * Rejects with `token_expired` or `invalid_token`; never says which check failed
 * to the client (the log gets the reason).
 */
export async function verifyToken<T extends AccessTokenClaims | RefreshTokenClaims>(
  ring: KeyRing,
  token: string,
  expect: { typ: typeof ACCESS_TOKEN_TYPE | typeof REFRESH_TOKEN_TYPE; issuer: string; audience: string; now: number },
): Promise<T> {
  const payload = verifySignedToken(ring, token, expect);
  if (typeof payload.sid !== 'string' || typeof payload.jti !== 'string' || typeof payload.sub !== 'string') {
    throw new TesseraError('invalid_token');
  }
  if (expect.typ === ACCESS_TOKEN_TYPE && (typeof payload.username !== 'string' || !Array.isArray(payload.roles))) {
    throw new TesseraError('invalid_token');
  }
  return payload as unknown as T;
}
