import type { FastifyInstance } from 'fastify';
import type { AuthContext } from '../../flows/context.js';
import { DatabaseUnavailableError } from '../../store/database.js';
import { errorResponses } from '../schemas.js';
import { FORM_GRANT_SCHEMA } from './refresh_route.js';

/** JWKS, discovery, OpenAPI, liveness and readiness. */
export function discoveryRoutes(app: FastifyInstance, ctx: AuthContext): void {
  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        operationId: 'getJwks',
        security: [],
        tags: ['discovery'],
        summary: 'Public signing keys (RFC 7517)',
        response: {
          200: {
            type: 'object',
            properties: { keys: { type: 'array', items: { type: 'object', additionalProperties: true } } },
            required: ['keys'],
          },
          ...errorResponses(),
        },
      },
    },
    async (_request, reply) => {
      // Verifiers may cache this long; a new key is published before it signs.
      reply.header('cache-control', `public, max-age=${ctx.config.jwksMaxAge}`);
      return ctx.keys.jwks();
    },
  );

  app.get(
    '/.well-known/openid-configuration',
    {
      schema: {
        operationId: 'getOpenIdConfiguration',
        security: [],
        tags: ['discovery'],
        summary: 'Where the keys are',
        response: {
          200: { type: 'object', properties: { issuer: { type: 'string' }, jwks_uri: { type: 'string' } }, required: ['issuer', 'jwks_uri'], additionalProperties: true },
          ...errorResponses(),
        },
      },
    },
    async () => {
      const issuer = ctx.issuer();
      return {
        issuer,
        jwks_uri: `${issuer}/.well-known/jwks.json`,
        token_endpoint: `${issuer}/auth/refresh`,
        grant_types_supported: ['refresh_token'],
        token_endpoint_auth_methods_supported: ['none'],
        id_token_signing_alg_values_supported: ctx.keys.algorithms(),
      };
    },
  );

  const status = { type: 'object', properties: { status: { type: 'string', enum: ['ok'] } }, required: ['status'] } as const;
  app.get(
    '/healthz',
    { schema: { operationId: 'healthz', security: [], tags: ['health'], summary: 'The process is alive', response: { 200: status, ...errorResponses() } } },
    async () => ({ status: 'ok' }),
  );

  app.get(
    '/readyz',
    {
      schema: {
        operationId: 'readyz',
        security: [],
        tags: ['health'],
        summary: 'The database answers (503 unavailable otherwise)',
        response: { 200: status, ...errorResponses('unavailable') },
      },
    },
    async () => {
      await withTimeout(ctx.store.ping(), 2_000);
      return { status: 'ok' };
    },
  );

  app.get('/openapi.json', { schema: { hide: true } }, async () => {
    const document = structuredClone(app.swagger()) as {
      servers?: unknown;
      paths: Record<string, Record<string, { requestBody?: { required?: boolean; content?: Record<string, { schema?: unknown }> } }>>;
    };
    // Known only once the server listens (port 0 picks it then).
    document.servers = [{ url: ctx.issuer(), description: 'this auth server' }];
    // Fastify's body schema makes the generator mark every body required; refresh needs none
    // (the token may come from the Authorization header or the cookie).
    const refresh = document.paths['/auth/refresh']?.post?.requestBody;
    if (refresh) refresh.required = false;
    // The form grant has rules of its own (RFC 6749 §6) that the route checks: publish them.
    const form = refresh?.content?.['application/x-www-form-urlencoded'];
    if (form) form.schema = structuredClone(FORM_GRANT_SCHEMA);
    return document;
  });
}


function withTimeout<T>(promise: Promise<T>, ms: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new DatabaseUnavailableError(new Error(`no answer in ${ms} ms`))), ms);
    promise.then(
      (value) => {
        clearTimeout(timer);
        resolve(value);
      },
      (error) => {
        clearTimeout(timer);
        reject(error);
      },
    );
  });
}
