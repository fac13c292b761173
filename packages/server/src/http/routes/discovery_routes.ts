import type { FastifyInstance } from 'fastify';
import type { AuthContext } from '../../flows/context.js';
import { DatabaseUnavailableError } from '../../store/database.js';

/** JWKS, discovery, OpenAPI, liveness and readiness. */
export function discoveryRoutes(app: FastifyInstance, ctx: AuthContext): void {
  app.get(
    '/.well-known/jwks.json',
    {
      schema: {
        tags: ['discovery'],
        summary: 'Public signing keys (RFC 7517)',
        response: {
          200: {
            type: 'object',
            properties: { keys: { type: 'array', items: { type: 'object', additionalProperties: true } } },
            required: ['keys'],
          },
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
        tags: ['discovery'],
        summary: 'Where the keys are',
        response: {
          200: { type: 'object', properties: { issuer: { type: 'string' }, jwks_uri: { type: 'string' } }, required: ['issuer', 'jwks_uri'], additionalProperties: true },
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

  app.get('/healthz', { schema: { tags: ['health'], summary: 'The process is alive' } }, async () => ({ status: 'ok' }));

  app.get(
    '/readyz',
    { schema: { tags: ['health'], summary: 'The database answers (503 unavailable otherwise)' } },
    async () => {
      await withTimeout(ctx.store.ping(), 2_000);
      return { status: 'ok' };
    },
  );

  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger());
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
