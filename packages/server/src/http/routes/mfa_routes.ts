import { TesseraError } from '@tessera/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Authenticated, authenticate } from '../../flows/authenticate.js';
import type { AuthContext } from '../../flows/context.js';
import { bindingKey } from '../../flows/dpop_binding.js';
import type { IssuedPair } from '../../flows/issue_token_pair.js';
import { confirmRecentSignIn } from '../../flows/password_confirmation.js';
import { completeMfaLogin, confirmTotp, disableTotp, startTotpEnrolment } from '../../flows/second_factors.js';
import { assertSameOrigin } from '../refresh_cookie.js';
import { clientInfo, dpopRequest, requireAccessCredential } from '../request_context.js';
import { bearerSecurity, errorResponses, REAUTHENTICATION_BODY, TOKEN_ERRORS } from '../schemas.js';
import { sendPair } from '../token_pair_reply.js';

const CODE = { type: 'string', minLength: 1, maxLength: 64, description: 'a 6-digit code from the app, or a recovery code (xxxx-xxxx-xxxx-xxxx)' } as const;

/** TOTP enrolment and removal, and the login step that takes a code. */
export function mfaRoutes(app: FastifyInstance, ctx: AuthContext): void {
  const auth = (request: FastifyRequest): Promise<Authenticated> => authenticate(ctx, requireAccessCredential(request, ctx.issuer()));

  app.post<{ Body: { current_password?: string } | null }>(
    '/auth/mfa/totp',
    {
      // No body is the same as {}.
      preValidation: async (request) => {
        request.body ??= null;
      },
      schema: {
        operationId: 'startTotp',
        tags: ['mfa'],
        summary: 'Start setting up an authenticator app',
        description:
          'Returns the secret and its otpauth:// URI (SHA-1, 6 digits, 30 s) to show as a QR code. Nothing changes for logins until a code is confirmed. ' +
          'A session that signed in more than 10 minutes ago must send `current_password` (401 invalid_credentials without it).',
        security: bearerSecurity,
        body: REAUTHENTICATION_BODY,
        response: {
          200: {
            type: 'object',
            properties: { secret: { type: 'string', description: 'base32' }, otpauth_uri: { type: 'string' } },
            required: ['secret', 'otpauth_uri'],
          },
          ...errorResponses('invalid_request', 'invalid_credentials', ...TOKEN_ERRORS, 'rate_limited', 'unavailable'),
        },
      },
    },
    async (request) => {
      const caller = await auth(request);
      await confirmRecentSignIn(ctx, caller, { password: request.body?.current_password, client: clientInfo(request), event: 'mfa.failed' });
      const { secret, otpauthUri } = await startTotpEnrolment(ctx, caller);
      return { secret, otpauth_uri: otpauthUri };
    },
  );

  app.post<{ Body: { code: string } }>(
    '/auth/mfa/totp/confirm',
    {
      schema: {
        operationId: 'confirmTotp',
        tags: ['mfa'],
        summary: 'Confirm the authenticator app with a current code',
        description: 'From now on a login needs a second factor. The ten recovery codes are shown this once; each works once.',
        security: bearerSecurity,
        body: { type: 'object', properties: { code: CODE }, required: ['code'], additionalProperties: false },
        response: {
          200: {
            type: 'object',
            properties: { recovery_codes: { type: 'array', items: { type: 'string' }, minItems: 10, maxItems: 10 } },
            required: ['recovery_codes'],
          },
          ...errorResponses('invalid_request', 'invalid_code', ...TOKEN_ERRORS, 'rate_limited', 'unavailable'),
        },
      },
    },
    async (request) => {
      const codes = await confirmTotp(ctx, await auth(request), { code: request.body.code, client: clientInfo(request) });
      return { recovery_codes: codes };
    },
  );

  app.get(
    '/auth/mfa',
    {
      schema: {
        operationId: 'getMfa',
        tags: ['mfa'],
        summary: "The caller's second factors",
        description: 'Whether an authenticator app is on (a confirmed TOTP factor), and how many recovery codes are left unused.',
        security: bearerSecurity,
        response: {
          200: {
            type: 'object',
            properties: { totp: { type: 'boolean' }, recovery_codes_left: { type: 'integer', minimum: 0 } },
            required: ['totp', 'recovery_codes_left'],
          },
          ...errorResponses('invalid_request', ...TOKEN_ERRORS, 'unavailable'),
        },
      },
    },
    async (request) => {
      const caller = await auth(request);
      const [totp, left] = await Promise.all([ctx.store.secondFactors.hasConfirmedTotp(caller.user.id), ctx.store.secondFactors.unusedRecoveryCodes(caller.user.id)]);
      return { totp, recovery_codes_left: totp ? left : 0 };
    },
  );

  app.delete<{ Body: { code?: string; password?: string } }>(
    '/auth/mfa/totp',
    {
      schema: {
        operationId: 'disableTotp',
        tags: ['mfa'],
        summary: 'Turn the authenticator app off',
        description: 'With a current code (or a recovery code) or the password. The recovery codes die with it.',
        security: bearerSecurity,
        body: {
          oneOf: [
            { type: 'object', properties: { code: CODE }, required: ['code'], additionalProperties: false },
            { type: 'object', properties: { password: { type: 'string', minLength: 1, maxLength: 4096 } }, required: ['password'], additionalProperties: false },
          ],
        },
        response: {
          204: { type: 'null', description: 'Off.' },
          ...errorResponses('invalid_request', 'invalid_code', 'invalid_credentials', ...TOKEN_ERRORS, 'not_found', 'rate_limited', 'unavailable'),
        },
      },
    },
    async (request, reply) => {
      await disableTotp(ctx, await auth(request), { ...request.body, client: clientInfo(request) });
      return reply.code(204).send();
    },
  );

  app.post<{ Body: { mfa_token: string; code: string; use_cookie?: boolean } }>(
    '/auth/login/mfa',
    {
      schema: {
        operationId: 'loginMfa',
        security: [],
        tags: ['auth'],
        summary: 'Finish a login with a second factor',
        description:
          'The mfa_token from the 401 mfa_required answer and a TOTP or recovery code. Wrong codes count toward the login rate limits; ' +
          'after five the mfa_token is worthless (401 invalid_token: sign in again).',
        body: {
          type: 'object',
          properties: { mfa_token: { type: 'string', minLength: 1, maxLength: 512 }, code: CODE, use_cookie: { type: 'boolean' } },
          required: ['mfa_token', 'code'],
          additionalProperties: false,
        },
        response: {
          200: { $ref: 'TokenPair#' },
          ...errorResponses('invalid_request', 'invalid_code', 'invalid_token', 'account_disabled', 'invalid_dpop_proof', 'rate_limited', 'unavailable'),
        },
      },
    },
    async (request, reply) => {
      if (request.body.use_cookie) assertSameOrigin(request, ctx.issuer());
      let pair: IssuedPair;
      try {
        const client = clientInfo(request);
        const dpopJkt = await bindingKey(ctx, dpopRequest(request, ctx.issuer()), client);
        pair = await completeMfaLogin(ctx, { mfaToken: request.body.mfa_token, code: request.body.code, client, ...(dpopJkt ? { dpopJkt } : {}) });
      } catch (error) {
        ctx.metrics.logins.inc({ outcome: error instanceof TesseraError ? error.code : 'error' });
        throw error;
      }
      ctx.metrics.logins.inc({ outcome: 'success' });
      return sendPair(reply, ctx, pair, request.body.use_cookie === true);
    },
  );
}
