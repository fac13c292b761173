import type { AuthenticationResponseJSON, RegistrationResponseJSON } from '@simplewebauthn/server';
import { TesseraError } from '@tessera/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Authenticated, authenticate } from '../../flows/authenticate.js';
import type { AuthContext } from '../../flows/context.js';
import { bindingKey } from '../../flows/dpop_binding.js';
import type { IssuedPair } from '../../flows/issue_token_pair.js';
import {
  listPasskeys,
  loginWithPasskey,
  PASSKEY_NAME_MAX_LENGTH,
  PASSKEY_NAME_PATTERN,
  passkeyLoginOptions,
  passkeyRegistrationOptions,
  registerPasskey,
  removePasskey,
  renamePasskey,
} from '../../flows/passkeys.js';
import { confirmRecentSignIn } from '../../flows/password_confirmation.js';
import type { PasskeyRecord } from '../../store/passkeys_store.js';
import { assertSameOrigin } from '../refresh_cookie.js';
import { clientInfo, dpopRequest, requireAccessCredential } from '../request_context.js';
import { bearerSecurity, errorResponses, REAUTHENTICATION_BODY, TOKEN_ERRORS } from '../schemas.js';
import { sendPair } from '../token_pair_reply.js';

// ---------------------------------------------------------------- schemas

/** base64url without padding, as WebAuthn's JSON forms carry binary. */
const b64url = (maxLength: number, description?: string) =>
  ({ type: 'string', minLength: 1, maxLength, pattern: '^[A-Za-z0-9_-]+$', ...(description ? { description } : {}) }) as const;

/** A credential id is at most 1023 bytes (WebAuthn §5.8.3). */
const CREDENTIAL_ID = b64url(1366, 'the credential id, base64url');

const PASSKEY_NAME = {
  type: 'string',
  minLength: 1,
  maxLength: PASSKEY_NAME_MAX_LENGTH,
  pattern: PASSKEY_NAME_PATTERN,
  description: `1 to ${PASSKEY_NAME_MAX_LENGTH} printable characters (no control or format characters, no line breaks), no space at either end`,
} as const;

const CREDENTIAL_COMMON = {
  id: CREDENTIAL_ID,
  rawId: { ...CREDENTIAL_ID, description: 'the same as id' },
  type: { type: 'string', enum: ['public-key'] },
  authenticatorAttachment: { type: ['string', 'null'], enum: ['platform', 'cross-platform', null] },
  clientExtensionResults: { type: 'object', description: 'as the browser gives them (credProps, …)' },
} as const;

/** `RegistrationResponseJSON` (WebAuthn Level 3), as `@simplewebauthn/browser`'s startRegistration or `credential.toJSON()` give it. */
const REGISTRATION_RESPONSE = {
  type: 'object',
  description: 'The RegistrationResponseJSON of navigator.credentials.create() with the options of POST /auth/passkeys/register/options.',
  properties: {
    ...CREDENTIAL_COMMON,
    response: {
      type: 'object',
      properties: {
        clientDataJSON: b64url(4096),
        attestationObject: b64url(12288),
        authenticatorData: b64url(8192),
        transports: { type: 'array', maxItems: 16, items: { type: 'string', maxLength: 32, pattern: '^[a-z-]+$' } },
        publicKeyAlgorithm: { type: 'integer' },
        publicKey: b64url(4096),
      },
      required: ['clientDataJSON', 'attestationObject'],
    },
  },
  required: ['id', 'rawId', 'type', 'response', 'clientExtensionResults'],
} as const;

/** `AuthenticationResponseJSON` (WebAuthn Level 3), as startAuthentication or `credential.toJSON()` give it. */
const AUTHENTICATION_RESPONSE = {
  type: 'object',
  description: 'The AuthenticationResponseJSON of navigator.credentials.get() with the options of POST /auth/passkeys/login/options.',
  properties: {
    ...CREDENTIAL_COMMON,
    response: {
      type: 'object',
      properties: {
        clientDataJSON: b64url(4096),
        authenticatorData: b64url(8192),
        signature: b64url(4096),
        userHandle: { type: ['string', 'null'], maxLength: 128, pattern: '^[A-Za-z0-9_-]*$' },
      },
      required: ['clientDataJSON', 'authenticatorData', 'signature'],
    },
  },
  required: ['id', 'rawId', 'type', 'response', 'clientExtensionResults'],
} as const;

const DESCRIPTOR = {
  type: 'object',
  properties: { id: { type: 'string' }, type: { type: 'string' }, transports: { type: 'array', items: { type: 'string' } } },
  required: ['id', 'type'],
  additionalProperties: true,
} as const;

const OPEN_OBJECT = { type: 'object', additionalProperties: true } as const;

/** `PublicKeyCredentialCreationOptionsJSON`: pass to startRegistration({ optionsJSON }) or PublicKeyCredential.parseCreationOptionsFromJSON. */
const CREATION_OPTIONS = {
  type: 'object',
  description: 'WebAuthn PublicKeyCredentialCreationOptionsJSON: a discoverable credential (residentKey required) for the caller, none it has already.',
  properties: {
    rp: { type: 'object', properties: { id: { type: 'string' }, name: { type: 'string' } }, required: ['name'], additionalProperties: true },
    user: {
      type: 'object',
      properties: { id: { type: 'string', description: 'base64url of the user id’s 16 bytes' }, name: { type: 'string' }, displayName: { type: 'string' } },
      required: ['id', 'name', 'displayName'],
      additionalProperties: true,
    },
    challenge: { type: 'string', description: 'base64url; single use, 5 minutes' },
    pubKeyCredParams: {
      type: 'array',
      items: { type: 'object', properties: { alg: { type: 'integer' }, type: { type: 'string' } }, required: ['alg', 'type'], additionalProperties: true },
    },
    timeout: { type: 'integer', description: 'milliseconds' },
    excludeCredentials: { type: 'array', items: DESCRIPTOR },
    authenticatorSelection: {
      type: 'object',
      properties: {
        authenticatorAttachment: { type: 'string' },
        residentKey: { type: 'string' },
        requireResidentKey: { type: 'boolean' },
        userVerification: { type: 'string' },
      },
      additionalProperties: true,
    },
    hints: { type: 'array', items: { type: 'string' } },
    attestation: { type: 'string' },
    attestationFormats: { type: 'array', items: { type: 'string' } },
    extensions: OPEN_OBJECT,
  },
  required: ['rp', 'user', 'challenge', 'pubKeyCredParams'],
  additionalProperties: true,
} as const;

/** `PublicKeyCredentialRequestOptionsJSON`: pass to startAuthentication({ optionsJSON }) or PublicKeyCredential.parseRequestOptionsFromJSON. */
const REQUEST_OPTIONS = {
  type: 'object',
  description:
    'WebAuthn PublicKeyCredentialRequestOptionsJSON. Without a username allowCredentials is empty (discoverable credentials); with one, that account’s ' +
    'credentials, or for a name without passkeys (or without an account) others of the same shape: the answer never tells whether an account exists.',
  properties: {
    challenge: { type: 'string', description: 'base64url; single use, 5 minutes' },
    timeout: { type: 'integer', description: 'milliseconds' },
    rpId: { type: 'string' },
    allowCredentials: { type: 'array', items: DESCRIPTOR },
    userVerification: { type: 'string', enum: ['required', 'preferred', 'discouraged'] },
    hints: { type: 'array', items: { type: 'string' } },
    extensions: OPEN_OBJECT,
  },
  required: ['challenge'],
  additionalProperties: true,
} as const;

const PASSKEY = {
  type: 'object',
  properties: {
    id: { type: 'string', format: 'uuid' },
    name: { type: 'string' },
    created_at: { type: 'string', format: 'date-time' },
    last_used_at: { type: ['string', 'null'], format: 'date-time', description: 'the last sign-in with it; null before the first' },
  },
  required: ['id', 'name', 'created_at', 'last_used_at'],
} as const;

const ID_PARAMS = { type: 'object', properties: { id: { type: 'string', maxLength: 64 } }, required: ['id'] } as const;

const view = (p: PasskeyRecord) => ({ id: p.id, name: p.name, created_at: p.createdAt.toISOString(), last_used_at: p.lastUsedAt?.toISOString() ?? null });

// ---------------------------------------------------------------- routes

/** Passkeys: registration from a session, login without a password, list, rename, delete. */
export function passkeyRoutes(app: FastifyInstance, ctx: AuthContext): void {
  const auth = (request: FastifyRequest): Promise<Authenticated> => authenticate(ctx, requireAccessCredential(request, ctx.issuer()));

  app.post<{ Body: { current_password?: string } | null }>(
    '/auth/passkeys/register/options',
    {
      // No body is the same as {}.
      preValidation: async (request) => {
        request.body ??= null;
      },
      schema: {
        operationId: 'passkeyRegistrationOptions',
        tags: ['passkeys'],
        summary: 'Start adding a passkey',
        description:
          'Options for navigator.credentials.create(); answer with POST /auth/passkeys/register within 5 minutes. At most 20 passkeys per account. ' +
          'A session that signed in more than 10 minutes ago must send `current_password` (401 invalid_credentials without it).',
        security: bearerSecurity,
        body: REAUTHENTICATION_BODY,
        response: { 200: CREATION_OPTIONS, ...errorResponses('invalid_request', 'invalid_credentials', ...TOKEN_ERRORS, 'rate_limited', 'unavailable') },
      },
    },
    async (request) => {
      const caller = await auth(request);
      await confirmRecentSignIn(ctx, caller, { password: request.body?.current_password, client: clientInfo(request), event: 'passkey.added' });
      return passkeyRegistrationOptions(ctx, caller);
    },
  );

  app.post<{ Body: { response: RegistrationResponseJSON; name?: string } }>(
    '/auth/passkeys/register',
    {
      schema: {
        operationId: 'registerPasskey',
        tags: ['passkeys'],
        summary: 'Add a passkey',
        description:
          'The credential created with the options of POST /auth/passkeys/register/options (their challenge works once, for this account). ' +
          'The authenticator must verify the user (PIN or biometrics). Without a name it is called "Passkey N". A bad or stale response is 401 invalid_code and adds nothing.',
        security: bearerSecurity,
        body: { type: 'object', properties: { response: REGISTRATION_RESPONSE, name: PASSKEY_NAME }, required: ['response'], additionalProperties: false },
        response: {
          201: {
            type: 'object',
            properties: { id: PASSKEY.properties.id, name: PASSKEY.properties.name, created_at: PASSKEY.properties.created_at },
            required: ['id', 'name', 'created_at'],
          },
          ...errorResponses('invalid_request', 'invalid_code', ...TOKEN_ERRORS, 'unavailable'),
        },
      },
    },
    async (request, reply) => {
      const caller = await auth(request);
      const { response, name } = request.body;
      const added = await registerPasskey(ctx, caller, { response, ...(name === undefined ? {} : { name }), client: clientInfo(request) });
      return reply.code(201).send({ id: added.id, name: added.name, created_at: added.createdAt.toISOString() });
    },
  );

  app.post<{ Body: { username?: string } | null }>(
    '/auth/passkeys/login/options',
    {
      // No body is the same as {}: discoverable credentials.
      preValidation: async (request) => {
        request.body ??= null;
      },
      schema: {
        operationId: 'passkeyLoginOptions',
        security: [],
        tags: ['passkeys'],
        summary: 'Start signing in with a passkey',
        description:
          'Options for navigator.credentials.get(); answer with POST /auth/passkeys/login within 5 minutes. The body is optional. ' +
          'Counts against the login rate limit of the client address.',
        body: {
          type: ['object', 'null'],
          properties: {
            username: { type: 'string', minLength: 1, maxLength: 256, description: 'optional: offer this account’s passkeys only (as login compares names)' },
          },
          additionalProperties: false,
        },
        response: { 200: REQUEST_OPTIONS, ...errorResponses('invalid_request', 'rate_limited', 'unavailable') },
      },
    },
    async (request) => {
      const username = request.body?.username;
      return passkeyLoginOptions(ctx, { ...(username === undefined ? {} : { username }), client: clientInfo(request) });
    },
  );

  app.post<{ Body: { response: AuthenticationResponseJSON; use_cookie?: boolean } }>(
    '/auth/passkeys/login',
    {
      schema: {
        operationId: 'loginWithPasskey',
        security: [],
        tags: ['auth', 'passkeys'],
        summary: 'Sign in with a passkey',
        description:
          'The assertion made with the options of POST /auth/passkeys/login/options. A whole login: no second factor is asked; the access token says ' +
          'amr ["hwk"]. A bad, replayed or stale assertion is 401 invalid_code. With use_cookie, the refresh token is set as an httpOnly cookie; with a ' +
          'DPoP proof, the pair is bound to its key.',
        body: {
          type: 'object',
          properties: {
            response: AUTHENTICATION_RESPONSE,
            use_cookie: { type: 'boolean', description: 'Put the refresh token in an httpOnly, SameSite=Strict cookie scoped to /auth instead of the body.' },
          },
          required: ['response'],
          additionalProperties: false,
        },
        response: {
          200: { $ref: 'TokenPair#' },
          ...errorResponses('invalid_request', 'invalid_code', 'invalid_dpop_proof', 'account_disabled', 'rate_limited', 'unavailable'),
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
        pair = await loginWithPasskey(ctx, { response: request.body.response, client, ...(dpopJkt ? { dpopJkt } : {}) });
      } catch (error) {
        ctx.metrics.logins.inc({ outcome: error instanceof TesseraError ? error.code : 'error' });
        throw error;
      }
      ctx.metrics.logins.inc({ outcome: 'success' });
      return sendPair(reply, ctx, pair, request.body.use_cookie === true);
    },
  );

  app.get(
    '/auth/passkeys',
    {
      schema: {
        operationId: 'listPasskeys',
        tags: ['passkeys'],
        summary: "The caller's passkeys, oldest first",
        security: bearerSecurity,
        response: {
          200: { type: 'object', properties: { passkeys: { type: 'array', items: PASSKEY } }, required: ['passkeys'] },
          ...errorResponses(...TOKEN_ERRORS, 'unavailable'),
        },
      },
    },
    async (request) => ({ passkeys: (await listPasskeys(ctx, await auth(request))).map(view) }),
  );

  app.patch<{ Params: { id: string }; Body: { name: string } }>(
    '/auth/passkeys/:id',
    {
      schema: {
        operationId: 'renamePasskey',
        tags: ['passkeys'],
        summary: 'Rename one of the caller’s passkeys',
        security: bearerSecurity,
        params: ID_PARAMS,
        body: { type: 'object', properties: { name: PASSKEY_NAME }, required: ['name'], additionalProperties: false },
        response: { 200: PASSKEY, ...errorResponses('invalid_request', ...TOKEN_ERRORS, 'not_found', 'unavailable') },
      },
    },
    async (request) => view(await renamePasskey(ctx, await auth(request), { id: request.params.id, name: request.body.name })),
  );

  app.delete<{ Params: { id: string } }>(
    '/auth/passkeys/:id',
    {
      schema: {
        operationId: 'removePasskey',
        tags: ['passkeys'],
        summary: 'Remove one of the caller’s passkeys',
        description: 'It signs in no more. Another account’s passkey, or an unknown id, is 404 not_found.',
        security: bearerSecurity,
        params: ID_PARAMS,
        response: { 204: { type: 'null', description: 'Removed.' }, ...errorResponses(...TOKEN_ERRORS, 'not_found', 'unavailable') },
      },
    },
    async (request, reply) => {
      await removePasskey(ctx, await auth(request), { id: request.params.id, client: clientInfo(request) });
      return reply.code(204).send();
    },
  );
}
