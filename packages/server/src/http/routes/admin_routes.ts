import { TesseraError } from '@tessera/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { auditEventView, sessionView, userView } from '../../account_views.js';
import type { Actor } from '../../flows/actors.js';
import { authenticate } from '../../flows/authenticate.js';
import type { AuthContext } from '../../flows/context.js';
import { issueResetLink } from '../../flows/password_reset.js';
import { ADMIN_ROLE, describeUser, endSessions, listAuditEvents, listUsers, updateUser } from '../../flows/user_administration.js';
import { clientInfo, requireAccessCredential } from '../request_context.js';
import { bearerSecurity, errorResponses, ISO_TIME_PATTERN, NO_NUL_PATTERN, TOKEN_ERRORS } from '../schemas.js';

const ADMIN_ERRORS = [...TOKEN_ERRORS, 'forbidden', 'unavailable'] as const;

const USER_ID_PARAMS = {
  type: 'object',
  properties: { id: { type: 'string', maxLength: 64 } },
  required: ['id'],
} as const;

const SESSION = {
  type: 'object',
  properties: {
    id: { type: 'string', format: 'uuid' },
    created_at: { type: 'string', format: 'date-time' },
    last_used_at: { type: 'string', format: 'date-time' },
    expires_at: { type: 'string', format: 'date-time' },
    user_agent: { type: ['string', 'null'] },
    ip: { type: ['string', 'null'] },
  },
  required: ['id', 'created_at', 'last_used_at', 'expires_at', 'user_agent', 'ip'],
} as const;

/**
 * The admin API: users and everyone's audit events, for access tokens of users who
 * hold the role `admin` now (read from the database, not the token: a demoted admin
 * is refused at once). Every change runs the flows the CLI runs, audited with the admin.
 */
export function adminRoutes(app: FastifyInstance, ctx: AuthContext): void {
  const admin = async (request: FastifyRequest): Promise<Actor & { kind: 'admin' }> => {
    const caller = await authenticate(ctx, requireAccessCredential(request, ctx.issuer()));
    if (!caller.user.roles.includes(ADMIN_ROLE)) throw new TesseraError('forbidden');
    return { kind: 'admin', user: caller.user, client: clientInfo(request) };
  };
  /** Not a UUID cannot be a user: the same answer as an unknown one. */
  const userId = (id: string): { id: string } => {
    if (!UUID.test(id)) throw new TesseraError('not_found', 'No such user.');
    return { id: id.toLowerCase() };
  };

  app.get<{ Querystring: { query?: string; limit?: string; cursor?: string } }>(
    '/admin/users',
    {
      schema: {
        operationId: 'adminListUsers',
        tags: ['admin'],
        summary: 'Users by name, a page at a time',
        security: bearerSecurity,
        querystring: {
          type: 'object',
          properties: {
            query: { type: 'string', maxLength: 256, pattern: NO_NUL_PATTERN, description: 'only users whose name or email contains this (any case)' },
            limit: { type: 'string', pattern: '^([1-9]|[1-9][0-9]|1[0-9]{2}|200)$', description: '1..200, default 50' },
            cursor: { type: 'string', pattern: '^[A-Za-z0-9_-]{1,400}$', description: 'the `next` of the previous page' },
          },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            properties: { users: { type: 'array', items: { $ref: 'User#' } }, next: { type: ['string', 'null'] } },
            required: ['users', 'next'],
          },
          ...errorResponses('invalid_request', ...ADMIN_ERRORS),
        },
      },
    },
    async (request) => {
      await admin(request);
      const { query, limit, cursor } = request.query;
      const page = await listUsers(ctx, { query, limit: limit === undefined ? undefined : Number(limit), cursor });
      return { users: page.users.map(userView), next: page.next };
    },
  );

  app.get<{ Params: { id: string } }>(
    '/admin/users/:id',
    {
      schema: {
        operationId: 'adminGetUser',
        tags: ['admin'],
        summary: 'One user, with its live sessions',
        security: bearerSecurity,
        params: USER_ID_PARAMS,
        response: {
          200: { allOf: [{ $ref: 'User#' }, { type: 'object', properties: { sessions: { type: 'array', items: SESSION } }, required: ['sessions'] }] },
          ...errorResponses(...ADMIN_ERRORS, 'not_found'),
        },
      },
    },
    async (request) => {
      await admin(request);
      const { user, sessions } = await describeUser(ctx, userId(request.params.id));
      return { ...userView(user), sessions: sessions.map(sessionView) };
    },
  );

  app.patch<{ Params: { id: string }; Body: { roles?: string[]; disabled?: boolean } }>(
    '/admin/users/:id',
    {
      schema: {
        operationId: 'adminUpdateUser',
        tags: ['admin'],
        summary: "Replace a user's roles, disable or enable it",
        description:
          'Roles reach tokens at the next refresh. Disabling ends every session of the user. An admin cannot remove their own admin role or ' +
          'disable themselves (400 invalid_request): an admin is only ever demoted by another, so the last one stays.',
        security: bearerSecurity,
        params: USER_ID_PARAMS,
        body: {
          type: 'object',
          properties: {
            roles: { type: 'array', maxItems: 32, items: { type: 'string', pattern: '^[A-Za-z][A-Za-z0-9_.:-]{0,63}$' } },
            disabled: { type: 'boolean' },
          },
          additionalProperties: false,
        },
        response: { 200: { $ref: 'User#' }, ...errorResponses('invalid_request', ...ADMIN_ERRORS, 'not_found') },
      },
    },
    async (request) => {
      const actor = await admin(request);
      const ref = userId(request.params.id);
      const { roles, disabled } = request.body;
      // Both checks first, then the changes: a refused half changes nothing.
      if (roles !== undefined && ref.id === actor.user.id && !roles.includes(ADMIN_ROLE)) {
        throw new TesseraError('invalid_request', 'You cannot remove your own admin role; ask another admin.');
      }
      if (disabled === true && ref.id === actor.user.id) throw new TesseraError('invalid_request', 'You cannot disable your own account.');
      // One transaction: a refused half (the last admin, say) leaves the other undone too.
      await updateUser(ctx, { user: ref, ...(roles === undefined ? {} : { roles }), ...(disabled === undefined ? {} : { disabled }), actor });
      return userView((await describeUser(ctx, ref)).user);
    },
  );

  app.post<{ Params: { id: string } }>(
    '/admin/users/:id/password-reset',
    {
      schema: {
        operationId: 'adminPasswordResetLink',
        tags: ['admin'],
        summary: 'A one-time password-reset link for a user (30 minutes)',
        description: 'Also mailed when the user has a verified email and mail is set up. Hand it over out of band otherwise.',
        security: bearerSecurity,
        params: USER_ID_PARAMS,
        response: {
          200: { type: 'object', properties: { reset_url: { type: 'string' }, mailed: { type: 'boolean' } }, required: ['reset_url'] },
          ...errorResponses(...ADMIN_ERRORS, 'not_found'),
        },
      },
    },
    async (request) => {
      const actor = await admin(request);
      const { resetUrl, mailed } = await issueResetLink(ctx, { user: userId(request.params.id), actor });
      return { reset_url: resetUrl, mailed };
    },
  );

  app.delete<{ Params: { id: string } }>(
    '/admin/users/:id/sessions',
    {
      schema: {
        operationId: 'adminEndSessions',
        tags: ['admin'],
        summary: 'End every session of a user',
        security: bearerSecurity,
        params: USER_ID_PARAMS,
        response: { 204: { type: 'null', description: 'Every session of the user is over.' }, ...errorResponses(...ADMIN_ERRORS, 'not_found') },
      },
    },
    async (request, reply) => {
      const actor = await admin(request);
      await endSessions(ctx, { user: userId(request.params.id), actor });
      return reply.code(204).send();
    },
  );

  app.get<{ Querystring: { username?: string; actor?: string; event?: string; since?: string; limit?: string; before?: string } }>(
    '/admin/audit',
    {
      schema: {
        operationId: 'adminListAuditEvents',
        tags: ['admin'],
        summary: "Everyone's security events, newest first",
        security: bearerSecurity,
        querystring: {
          type: 'object',
          properties: {
            username: { type: 'string', maxLength: 256, pattern: NO_NUL_PATTERN },
            actor: { type: 'string', maxLength: 256, pattern: NO_NUL_PATTERN, description: 'only changes made by this admin' },
            event: { type: 'string', maxLength: 64, pattern: NO_NUL_PATTERN },
            since: { type: 'string', pattern: ISO_TIME_PATTERN, examples: ['2026-01-31T12:00:00Z'], description: 'an ISO time: only events at or after it' },
            limit: { type: 'string', pattern: '^([1-9]|[1-9][0-9]|[1-4][0-9]{2}|500)$', description: '1..500, default 50' },
            before: { type: 'string', pattern: '^[0-9]{1,18}$', description: 'the `next` of the previous page' },
          },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            properties: { events: { type: 'array', items: { $ref: 'AuditEvent#' } }, next: { type: ['string', 'null'] } },
            required: ['events', 'next'],
          },
          ...errorResponses('invalid_request', ...ADMIN_ERRORS),
        },
      },
    },
    async (request) => {
      await admin(request);
      const { username, actor, event, since, limit, before } = request.query;
      const page = await listAuditEvents(ctx, { username, actor, event, since, limit: limit === undefined ? 50 : Number(limit), before });
      return { events: page.events.map(auditEventView), next: page.next };
    },
  );
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
