import { TesseraError } from '@tessera/protocol';
import type { FastifyInstance } from 'fastify';
import type { AuthContext } from '../../flows/context.js';
import { bindingKey } from '../../flows/dpop_binding.js';
import type { IssuedPair } from '../../flows/issue_token_pair.js';
import { login } from '../../flows/login.js';
import { registerUser } from '../../flows/register_user.js';
import { logout } from '../../flows/sessions.js';
import { assertSameOrigin, clearRefreshCookie, readRefreshCookie } from '../refresh_cookie.js';
import { accessCredential, clientInfo, dpopRequest } from '../request_context.js';
import { errorResponses, nfkcUsername, TOKEN_ERRORS } from '../schemas.js';
import { sendPair } from '../token_pair_reply.js';
import { refreshRoute } from './refresh_route.js';

interface CredentialsBody {
  username: string;
  password: string;
  use_cookie?: boolean;
}

interface RegistrationBody extends CredentialsBody {
  email?: string;
}

/** Register, login, refresh, logout: the routes that make and end sessions. */
export function tokenRoutes(app: FastifyInstance, ctx: AuthContext): void {
  app.post<{ Body: RegistrationBody }>(
    '/auth/register',
    {
      preValidation: nfkcUsername,
      schema: {
        operationId: 'register',
        security: [],
        tags: ['auth'],
        summary: 'Create an account',
        body: { $ref: 'Registration#' },
        response: {
          201: {
            type: 'object',
            properties: {
              user: {
                type: 'object',
                properties: { id: { type: 'string', format: 'uuid' }, username: { type: 'string' } },
                required: ['id', 'username'],
              },
            },
            required: ['user'],
          },
          ...errorResponses('invalid_request', 'weak_password', 'username_taken', 'email_taken', 'signup_disabled', 'rate_limited', 'not_configured', 'unavailable'),
        },
      },
    },
    async (request, reply) => {
      const { username, password, email } = request.body;
      const user = await registerUser(ctx, { username, password, ...(email === undefined ? {} : { email }), client: clientInfo(request) });
      return reply.code(201).send({ user: { id: user.id, username: user.username } });
    },
  );

  app.post<{ Body: CredentialsBody }>(
    '/auth/login',
    {
      schema: {
        operationId: 'login',
        security: [],
        tags: ['auth'],
        summary: 'Sign in with a username and password',
        description: 'Opens a session and returns its first token pair. With use_cookie, the refresh token is set as an httpOnly cookie.',
        body: { $ref: 'Credentials#' },
        response: {
          200: { $ref: 'TokenPair#' },
          401: {
            description: 'invalid_credentials; invalid_dpop_proof (a DPoP header that is not a valid proof); or mfa_required, with the mfa_token for POST /auth/login/mfa',
            anyOf: [{ $ref: 'MfaRequired#' }, { $ref: 'ErrorBody#' }],
          },
          ...errorResponses('invalid_request', 'account_disabled', 'rate_limited', 'unavailable'),
        },
      },
    },
    async (request, reply) => {
      const issuer = ctx.issuer();
      if (request.body.use_cookie) assertSameOrigin(request, issuer);
      let pair: IssuedPair;
      try {
        const client = clientInfo(request);
        const dpopJkt = await bindingKey(ctx, dpopRequest(request, issuer), client);
        pair = await login(ctx, { username: request.body.username, password: request.body.password, client, ...(dpopJkt ? { dpopJkt } : {}) });
      } catch (error) {
        const code = error instanceof TesseraError ? error.code : 'error';
        ctx.metrics.logins.inc({ outcome: code });
        throw error;
      }
      ctx.metrics.logins.inc({ outcome: 'success' });
      return sendPair(reply, ctx, pair, request.body.use_cookie === true);
    },
  );

  refreshRoute(app, ctx);

  app.post(
    '/auth/logout',
    {
      schema: {
        operationId: 'logout',
        tags: ['auth'],
        summary: 'End the session of the presented access or refresh token',
        security: [{ bearer: [] }, { refreshCookie: [] }],
        response: { 204: { type: 'null', description: 'The session is over.' }, ...errorResponses(...TOKEN_ERRORS, 'unavailable') },
      },
    },
    async (request, reply) => {
      const issuer = ctx.issuer();
      let credential = accessCredential(request, issuer);
      if (credential === undefined) {
        const token = readRefreshCookie(request, issuer);
        if (token === undefined) throw new TesseraError('invalid_token', 'An access or refresh token is required.');
        assertSameOrigin(request, issuer);
        credential = { token, scheme: 'bearer', dpop: dpopRequest(request, issuer), client: clientInfo(request) };
      }
      // A bound session ends only with a proof by its key: a stolen token cannot log its owner out.
      await logout(ctx, { credential, client: clientInfo(request) });
      clearRefreshCookie(reply, issuer);
      return reply.code(204).send();
    },
  );
}

