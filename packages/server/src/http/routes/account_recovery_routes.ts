import type { FastifyInstance } from 'fastify';
import { authenticate } from '../../flows/authenticate.js';
import type { AuthContext } from '../../flows/context.js';
import { setEmail, verifyEmail } from '../../flows/email_verification.js';
import { requestPasswordReset, resetPassword } from '../../flows/password_reset.js';
import { clientInfo, requireAccessCredential } from '../request_context.js';
import { bearerSecurity, errorResponses, TOKEN_ERRORS } from '../schemas.js';

/** The one answer to "forgot password", whoever asked. */
const FORGOT_ANSWER = { message: 'If that account has a verified email address, a link to reset its password is on its way.' };

/** Forgot password, reset by link, the account's email and its verification. */
export function accountRecoveryRoutes(app: FastifyInstance, ctx: AuthContext): void {
  app.post<{ Body: { username?: string; email?: string } }>(
    '/auth/password/forgot',
    {
      schema: {
        operationId: 'forgotPassword',
        security: [],
        tags: ['recovery'],
        summary: 'Mail a one-time password-reset link',
        description:
          '202 with the same body for every account, known or not: a link valid 30 minutes is mailed only when the account has a verified email ' +
          '(and has not had too many mails this hour). 429 only for too many requests from one address.',
        body: {
          oneOf: [
            { type: 'object', properties: { username: { type: 'string', minLength: 1, maxLength: 256 } }, required: ['username'], additionalProperties: false },
            { type: 'object', properties: { email: { type: 'string', minLength: 1, maxLength: 320 } }, required: ['email'], additionalProperties: false },
          ],
        },
        response: {
          202: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
          ...errorResponses('invalid_request', 'rate_limited', 'not_configured', 'unavailable'),
        },
      },
    },
    async (request, reply) => {
      await requestPasswordReset(ctx, { ...request.body, client: clientInfo(request) });
      return reply.code(202).send(FORGOT_ANSWER);
    },
  );

  app.post<{ Body: { token: string; new_password: string } }>(
    '/auth/password/reset',
    {
      schema: {
        operationId: 'resetPassword',
        security: [],
        tags: ['recovery'],
        summary: 'Set a new password with a reset token',
        description: 'The token works once, for 30 minutes. Every session of the user ends; the user then signs in with the new password.',
        body: {
          type: 'object',
          properties: { token: { $ref: 'AccountToken#' }, new_password: { $ref: 'NewPassword#' } },
          required: ['token', 'new_password'],
          additionalProperties: false,
        },
        response: {
          204: { type: 'null', description: 'Changed; every session of the user is over.' },
          ...errorResponses('invalid_request', 'invalid_reset_token', 'weak_password', 'rate_limited', 'unavailable'),
        },
      },
    },
    async (request, reply) => {
      await resetPassword(ctx, { token: request.body.token, newPassword: request.body.new_password, client: clientInfo(request) });
      return reply.code(204).send();
    },
  );

  app.post<{ Body: { email: string; current_password?: string } }>(
    '/auth/email',
    {
      schema: {
        operationId: 'setEmail',
        tags: ['recovery'],
        summary: "Set the caller's email (unverified) and mail a verification link",
        description:
          'Reset links go to this address, so `current_password` is required unless the session signed in within the last 10 minutes ' +
          'and the account has no verified address yet; a previous verified address is told of the change.',
        security: bearerSecurity,
        body: {
          type: 'object',
          properties: { email: { $ref: 'Email#' }, current_password: { type: 'string', minLength: 1, maxLength: 1024 } },
          required: ['email'],
          additionalProperties: false,
        },
        response: {
          202: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
          ...errorResponses('invalid_request', 'invalid_credentials', 'email_taken', ...TOKEN_ERRORS, 'not_configured', 'rate_limited', 'unavailable'),
        },
      },
    },
    async (request, reply) => {
      const caller = await authenticate(ctx, requireAccessCredential(request, ctx.issuer()));
      await setEmail(ctx, caller, { email: request.body.email, currentPassword: request.body.current_password, client: clientInfo(request) });
      return reply.code(202).send({ message: 'A verification link is on its way to that address; it works for 24 hours.' });
    },
  );

  app.post<{ Body: { token: string } }>(
    '/auth/email/verify',
    {
      schema: {
        operationId: 'verifyEmail',
        security: [],
        tags: ['recovery'],
        summary: 'Verify an email address with the token of its link',
        description: 'The token works once, for 24 hours, and only while the address is still the account’s. `email_verified` reaches access tokens at the next refresh.',
        body: { type: 'object', properties: { token: { $ref: 'AccountToken#' } }, required: ['token'], additionalProperties: false },
        response: {
          204: { type: 'null', description: 'Verified.' },
          ...errorResponses('invalid_request', 'invalid_reset_token', 'rate_limited', 'unavailable'),
        },
      },
    },
    async (request, reply) => {
      await verifyEmail(ctx, { token: request.body.token, client: clientInfo(request) });
      return reply.code(204).send();
    },
  );
}
