import { REFRESH_COOKIE, SECURE_REFRESH_COOKIE, TesseraError } from '@tessera/protocol';
import type { FastifyReply, FastifyRequest } from 'fastify';

/**
 * Cookie mode: the refresh token lives in an httpOnly cookie that page script
 * cannot read, scoped to `/auth` so it travels to the auth endpoints only, and
 * SameSite=Strict so no other site can make the browser send it. `Secure`
 * (with the `__Secure-` name) everywhere except plain http on localhost.
 */
export function refreshCookieName(issuer: string): string {
  return isSecure(issuer) ? SECURE_REFRESH_COOKIE : REFRESH_COOKIE;
}

export function setRefreshCookie(reply: FastifyReply, issuer: string, token: string, maxAgeSeconds: number): void {
  reply.setCookie(refreshCookieName(issuer), token, {
    httpOnly: true,
    sameSite: 'strict',
    secure: isSecure(issuer),
    path: '/auth',
    maxAge: maxAgeSeconds,
  });
}

export function clearRefreshCookie(reply: FastifyReply, issuer: string): void {
  reply.clearCookie(refreshCookieName(issuer), {
    httpOnly: true,
    sameSite: 'strict',
    secure: isSecure(issuer),
    path: '/auth',
  });
}

export function readRefreshCookie(request: FastifyRequest, issuer: string): string | undefined {
  const value = request.cookies[refreshCookieName(issuer)];
  return value === undefined || value === '' ? undefined : value;
}

/**
 * Defence in depth for requests that use or set the cookie: beside SameSite,
 * a browser's own `Sec-Fetch-Site` and `Origin` must say the request comes from
 * this server's origin. Clients that are not browsers send neither and pass.
 */
export function assertSameOrigin(request: FastifyRequest, issuer: string): void {
  const site = request.headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin' && site !== 'none') throw crossSite();
  const origin = request.headers.origin;
  if (origin === undefined) return;
  const own = `${request.protocol}://${request.host}`;
  if (origin !== new URL(issuer).origin && origin !== own) throw crossSite();
}

function crossSite(): TesseraError {
  return new TesseraError('invalid_request', 'Cross-site requests cannot use the refresh cookie.');
}

function isSecure(issuer: string): boolean {
  const url = new URL(issuer);
  if (url.protocol === 'https:') return true;
  return !['localhost', '127.0.0.1', '[::1]'].includes(url.hostname);
}
