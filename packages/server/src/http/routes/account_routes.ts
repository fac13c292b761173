import { TesseraError } from '@tessera/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Authenticated, authenticate } from '../../flows/authenticate.js';
import type { AuthContext } from '../../flows/context.js';
import { changePassword, listSessions, logoutAll, revokeOwnSession } from '../../flows/sessions.js';
import { clientInfo, requireAccessCredential } from '../request_context.js';
import { bearerSecurity, errorResponses, TOKEN_ERRORS } from '../schemas.js';

/** The signed-in user's own account: who am I, my sessions, my password, my security events. */
export function accountRoutes(app: FastifyInstance, ctx: AuthContext): void {
  const auth = (request: FastifyRequest): Promise<Authenticated> => authenticate(ctx, requireAccessCredential(request, ctx.issuer()));

  app.get(
    '/auth/me',
    {
      schema: {
        operationId: 'getMe',
        tags: ['account'],
        summary: 'The caller',
        security: bearerSecurity,
        response: {
          200: {
            type: 'object',
            properties: {
              id: { type: 'string' },
              username: { type: 'string' },
              roles: { type: 'array', items: { type: 'string' } },
              email: { type: 'string', description: 'present only when the user has an email (as is the `email_verified` claim)' },
              email_verified: { type: 'boolean' },
            },
            required: ['id', 'username', 'roles'],
          },
          ...errorResponses(...TOKEN_ERRORS, 'unavailable'),
        },
      },
    },
    async (request) => {
      const { user } = await auth(request);
      const email = user.email ? { email: user.email, email_verified: user.emailVerifiedAt !== null } : {};
      return { id: user.id, username: user.username, roles: user.roles, ...email };
    },
  );

  app.post(
    '/auth/logout-all',
    {
      schema: {
        operationId: 'logoutAll',
        tags: ['account'],
        summary: 'End every session of the caller',
        security: bearerSecurity,
        response: { 204: { type: 'null', description: 'Every session is over.' }, ...errorResponses(...TOKEN_ERRORS, 'unavailable') },
      },
    },
    async (request, reply) => {
      await logoutAll(ctx, await auth(request), clientInfo(request));
      return reply.code(204).send();
    },
  );

  app.get(
    '/auth/sessions',
    {
      schema: {
        operationId: 'listSessions',
        tags: ['account'],
        summary: "The caller's live sessions, newest first",
        security: bearerSecurity,
        response: {
          200: {
            type: 'object',
            properties: {
              sessions: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'string', format: 'uuid' },
                    created_at: { type: 'string', format: 'date-time' },
                    last_used_at: { type: 'string', format: 'date-time' },
                    expires_at: { type: 'string', format: 'date-time' },
                    user_agent: { type: ['string', 'null'] },
                    ip: { type: ['string', 'null'] },
                    current: { type: 'boolean' },
                    dpop_bound: { type: 'boolean', description: 'whether the session is bound to a key (DPoP): its refresh token is worthless without that key' },
                  },
                  required: ['id', 'created_at', 'last_used_at', 'expires_at', 'user_agent', 'ip', 'current'],
                },
              },
            },
            required: ['sessions'],
          },
          ...errorResponses(...TOKEN_ERRORS, 'unavailable'),
        },
      },
    },
    async (request) => {
      const caller = await auth(request);
      const sessions = await listSessions(ctx, caller);
      return {
        sessions: sessions.map((s) => ({
          id: s.id,
          created_at: s.createdAt.toISOString(),
          last_used_at: s.lastUsedAt.toISOString(),
          expires_at: s.expiresAt.toISOString(),
          user_agent: s.userAgent,
          ip: s.ip,
          current: s.id === caller.session.id,
          dpop_bound: s.dpopJkt !== null,
        })),
      };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/auth/sessions/:id',
    {
      schema: {
        operationId: 'revokeSession',
        tags: ['account'],
        summary: 'End one of the caller’s sessions',
        security: bearerSecurity,
        params: { type: 'object', properties: { id: { type: 'string', maxLength: 64 } }, required: ['id'] },
        response: { 204: { type: 'null', description: 'The session is over.' }, ...errorResponses(...TOKEN_ERRORS, 'not_found', 'unavailable') },
      },
    },
    async (request, reply) => {
      const caller = await auth(request);
      // Not a UUID cannot be a session: the same answer as someone else's session.
      if (!UUID.test(request.params.id)) throw new TesseraError('not_found', 'No such session.');
      await revokeOwnSession(ctx, caller, { sessionId: request.params.id, client: clientInfo(request) });
      return reply.code(204).send();
    },
  );

  app.post<{ Body: { current_password: string; new_password: string } }>(
    '/auth/password',
    {
      schema: {
        operationId: 'changePassword',
        tags: ['account'],
        summary: 'Change the password; every other session ends',
        security: bearerSecurity,
        body: {
          type: 'object',
          properties: {
            current_password: { type: 'string', minLength: 1, maxLength: 4096 },
            new_password: { $ref: 'NewPassword#' },
          },
          required: ['current_password', 'new_password'],
          additionalProperties: false,
        },
        response: {
          204: { type: 'null', description: 'Changed; the other sessions are over.' },
          ...errorResponses('invalid_request', 'weak_password', 'invalid_credentials', ...TOKEN_ERRORS, 'rate_limited', 'unavailable'),
        },
      },
    },
    async (request, reply) => {
      const caller = await auth(request);
      await changePassword(ctx, caller, {
        currentPassword: request.body.current_password,
        newPassword: request.body.new_password,
        client: clientInfo(request),
      });
      return reply.code(204).send();
    },
  );

  app.get<{ Querystring: { limit?: string; before?: string } }>(
    '/auth/audit',
    {
      schema: {
        operationId: 'listAuditEvents',
        tags: ['account'],
        summary: "The caller's own security events, newest first",
        security: bearerSecurity,
        querystring: {
          type: 'object',
          properties: {
            limit: { type: 'string', pattern: '^[0-9]{1,3}$', description: '1..100, default 20' },
            before: { type: 'string', pattern: '^[0-9]{1,18}$', description: 'the `next` cursor of the previous page' },
          },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            properties: {
              events: {
                type: 'array',
                items: {
                  type: 'object',
                  properties: {
                    id: { type: 'string' },
                    at: { type: 'string', format: 'date-time' },
                    event: { type: 'string' },
                    session_id: { type: ['string', 'null'] },
                    ip: { type: ['string', 'null'] },
                    user_agent: { type: ['string', 'null'] },
                    outcome: { type: 'string', enum: ['success', 'failure'] },
                    reason: { type: ['string', 'null'] },
                  },
                  required: ['id', 'at', 'event', 'session_id', 'ip', 'user_agent', 'outcome'],
                },
              },
              next: { type: ['string', 'null'] },
            },
            required: ['events', 'next'],
          },
          ...errorResponses('invalid_request', ...TOKEN_ERRORS, 'unavailable'),
        },
      },
    },
    async (request) => {
      const caller = await auth(request);
      const limit = Math.min(100, Math.max(1, Number(request.query.limit ?? 20)));
      const rows = await ctx.store.audit.list({ userId: caller.user.id, limit: limit + 1, before: request.query.before });
      const page = rows.slice(0, limit);
      return {
        events: page.map((e) => ({
          id: e.id,
          at: e.at.toISOString(),
          event: e.event,
          session_id: e.sessionId,
          ip: e.ip,
          user_agent: e.userAgent,
          outcome: e.outcome,
          reason: e.reason,
        })),
        next: rows.length > limit ? page[page.length - 1]!.id : null,
      };
    },
  );
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
