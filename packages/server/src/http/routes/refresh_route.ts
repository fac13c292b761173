import formbody from '@fastify/formbody';
import { TesseraError } from '@tessera/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AuthContext } from '../../flows/context.js';
import { rotateRefreshToken } from '../../flows/rotate_refresh_token.js';
import { sendError, toTesseraError } from '../error_reply.js';
import { assertSameOrigin, clearRefreshCookie, readRefreshCookie } from '../refresh_cookie.js';
import { bearerToken, clientInfo, dpopRequest } from '../request_context.js';
import { errorResponses } from '../schemas.js';
import { sendPair } from '../token_pair_reply.js';

interface RefreshBody {
  refresh_token?: string;
  grant_type?: string;
  client_id?: string;
  scope?: string;
}

const FORM = 'application/x-www-form-urlencoded';

/** Bodies here are a token and a few words: the same bound as the JSON bodies. */
const BODY_LIMIT = 16 * 1024;

const oauthError = {
  type: 'object',
  description: 'OAuth 2.0 error (RFC 6749 §5.2), for the form grant only',
  properties: { error: { type: 'string' }, error_description: { type: 'string' } },
  required: ['error'],
} as const;

const BODY_PROPERTIES = {
  refresh_token: { type: 'string', minLength: 1, maxLength: 8192 },
  grant_type: { type: 'string', maxLength: 64, description: 'form grant only: refresh_token' },
  client_id: { type: 'string', maxLength: 256, description: "form grant only, optional: the server's --client-id" },
  scope: { type: 'string', maxLength: 1024, description: 'form grant only, ignored: Tessera tokens carry roles, not scopes' },
} as const;

/**
 * The form grant's body as RFC 6749 §6 has it, for the OpenAPI description. The route's
 * own schema serves JSON bodies too, where the token may come from the header or the
 * cookie instead, so it cannot require these: the route checks them itself, in OAuth's
 * terms (no grant_type or no refresh_token: invalid_request; another grant type:
 * unsupported_grant_type).
 */
export const FORM_GRANT_SCHEMA = {
  type: 'object',
  properties: {
    ...BODY_PROPERTIES,
    grant_type: { type: 'string', enum: ['refresh_token'], description: 'any other grant type is 400 unsupported_grant_type' },
    client_id: { ...BODY_PROPERTIES.client_id, description: "optional: the server's --client-id (another is 400 invalid_grant)" },
  },
  required: ['grant_type', 'refresh_token'],
  additionalProperties: false,
} as const;

/**
 * `POST /auth/refresh`: a refresh token for a new pair. Our own clients send the token
 * as `Authorization: Bearer`, in a JSON body or in the cookie; any OAuth 2.0 client
 * sends the standard refresh grant as a form (RFC 6749 §6) and gets OAuth's error
 * format back. Forms are parsed on this route only: elsewhere a cross-site form
 * could post to the API without a CORS preflight.
 */
export function refreshRoute(app: FastifyInstance, ctx: AuthContext): void {
  app.register(async (scope) => {
    await scope.register(formbody, { bodyLimit: BODY_LIMIT });
    scope.setErrorHandler((error, request, reply) => (isForm(request) ? sendOAuthError(request, reply, error) : sendError(request, reply, error)));

    scope.post<{ Body: RefreshBody | null }>(
      '/auth/refresh',
      {
        // No body at all is the usual case (the token is in a header or the cookie).
        preValidation: async (request) => {
          request.body ??= null;
        },
        schema: {
          operationId: 'refresh',
          tags: ['auth'],
          summary: 'Exchange a refresh token for a new pair (also the OAuth 2.0 refresh grant)',
          description:
            'The refresh token comes from Authorization: Bearer, the JSON body, or the cookie (in that order); or, as any OAuth 2.0 client sends it, ' +
            'from the form grant_type=refresh_token&refresh_token=… (application/x-www-form-urlencoded), whose errors are OAuth\'s (400 invalid_grant, ' +
            'unsupported_grant_type, invalid_request). Every refresh rotates the token. Presenting the token just rotated again within the reuse grace ' +
            'returns the same successor; any other reuse is token_reused (invalid_grant) and ends the session.',
          body: { type: ['object', 'null'], properties: BODY_PROPERTIES, additionalProperties: false },
          consumes: ['application/json', FORM],
          security: [{ bearer: [] }, { refreshCookie: [] }, {}],
          response: withOAuthErrors({
            200: { $ref: 'TokenPair#' },
            ...errorResponses('invalid_request', 'invalid_token', 'token_expired', 'token_revoked', 'token_reused', 'invalid_dpop_proof', 'unavailable'),
          }),
        },
      },
      async (request, reply) => {
        if (isForm(request)) return refreshGrant(ctx, request, reply);
        const issuer = ctx.issuer();
        let token = bearerToken(request) ?? request.body?.refresh_token;
        const fromCookie = token === undefined;
        if (fromCookie) {
          token = readRefreshCookie(request, issuer);
          if (token === undefined) throw new TesseraError('invalid_token', 'A refresh token is required.');
          assertSameOrigin(request, issuer);
        }
        try {
          const pair = await rotateRefreshToken(ctx, { refreshToken: token!, client: clientInfo(request), dpop: dpopRequest(request, issuer) });
          return sendPair(reply, ctx, pair, fromCookie);
        } catch (error) {
          // A dead cookie is of no further use: drop it, so the browser stops sending it.
          // A refused proof changes nothing, the cookie included: its owner may still use it.
          if (fromCookie && error instanceof TesseraError && error.status === 401 && error.code !== 'invalid_dpop_proof') clearRefreshCookie(reply, issuer);
          throw error;
        }
      },
    );
  });
}

/** RFC 6749 §6 for a public client: the token is in the form, never taken from the cookie. */
async function refreshGrant(ctx: AuthContext, request: FastifyRequest<{ Body: RefreshBody | null }>, reply: FastifyReply) {
  const body = request.body ?? {};
  if (request.headers.authorization !== undefined) {
    return oauthReply(reply, 401, 'invalid_client', 'Tessera clients are public: send no client authentication, only client_id.');
  }
  if (body.grant_type === undefined) return oauthReply(reply, 400, 'invalid_request', 'grant_type is required.');
  if (body.grant_type !== 'refresh_token') return oauthReply(reply, 400, 'unsupported_grant_type', 'Only grant_type=refresh_token is supported here.');
  if (body.refresh_token === undefined) return oauthReply(reply, 400, 'invalid_request', 'refresh_token is required.');
  if (body.client_id !== undefined && body.client_id !== ctx.config.clientId) {
    return oauthReply(reply, 400, 'invalid_grant', 'The refresh token was not issued to this client.');
  }
  const pair = await rotateRefreshToken(ctx, { refreshToken: body.refresh_token, client: clientInfo(request), dpop: dpopRequest(request, ctx.issuer()) });
  return reply.send(pair.body);
}

function isForm(request: FastifyRequest): boolean {
  return (request.headers['content-type'] ?? '').toLowerCase().startsWith(FORM);
}

function oauthReply(reply: FastifyReply, status: number, error: string, description: string): FastifyReply {
  return reply
    .code(status)
    .header('cache-control', 'no-store')
    .header('pragma', 'no-cache')
    .type('application/json; charset=utf-8')
    .serializer(JSON.stringify)
    .send({ error, error_description: description });
}

/** The error statuses of the form grant answer in OAuth's shape as well as ours: say so in the OpenAPI description. */
function withOAuthErrors(responses: Record<number, unknown>): Record<number, unknown> {
  const out: Record<number, unknown> = { ...responses };
  for (const status of [400, 401, 500, 503]) {
    const ours = (responses[status] as { description?: string } | undefined) ?? { description: '' };
    out[status] = { description: `${ours.description}; the form grant answers OAuth's {error, error_description}`, anyOf: [{ $ref: 'ErrorBody#' }, oauthError] };
  }
  return out;
}

/** Our error codes in OAuth's terms (RFC 6749 §5.2) for the form grant. */
function sendOAuthError(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  const tessera = toTesseraError(error);
  if (tessera.status >= 500) {
    request.log.error({ err: error }, tessera.code === 'unavailable' ? 'database unavailable' : 'unexpected error');
    if (tessera.retryAfter !== undefined) reply.header('retry-after', String(tessera.retryAfter));
    return oauthReply(reply, tessera.status, tessera.code === 'unavailable' ? 'temporarily_unavailable' : 'server_error', tessera.message);
  }
  if (tessera.code === 'invalid_request') return oauthReply(reply, 400, 'invalid_request', tessera.message);
  // RFC 9449 §5: the token endpoint's own error for a missing or bad proof.
  if (tessera.code === 'invalid_dpop_proof') return oauthReply(reply, 400, 'invalid_dpop_proof', tessera.message);
  // invalid_token, token_expired, token_revoked, token_reused: the grant itself is no good.
  return oauthReply(reply, 400, 'invalid_grant', tessera.message);
}

