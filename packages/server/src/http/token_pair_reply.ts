import type { FastifyReply } from 'fastify';
import type { AuthContext } from '../flows/context.js';
import type { IssuedPair } from '../flows/issue_token_pair.js';
import { setRefreshCookie } from './refresh_cookie.js';

/**
 * Answers a new token pair: in the body, or in cookie mode with the refresh token in
 * its httpOnly cookie and left out of the body. Every login route answers through here.
 */
export function sendPair(reply: FastifyReply, ctx: AuthContext, pair: IssuedPair, useCookie: boolean): FastifyReply {
  // RFC 6749 §5.1, on the answer itself, whatever the hooks decide from the URL.
  reply.header('cache-control', 'no-store').header('pragma', 'no-cache');
  if (!useCookie) return reply.send(pair.body);
  const { refresh_token, ...body } = pair.body;
  setRefreshCookie(reply, ctx.issuer(), refresh_token, body.refresh_expires_in);
  return reply.send(body);
}
