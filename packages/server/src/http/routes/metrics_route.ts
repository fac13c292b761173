import { isIP } from 'node:net';
import { TesseraError } from '@tessera/protocol';
import type { FastifyInstance } from 'fastify';
import type { AuthContext } from '../../flows/context.js';
import { BearerSecret } from '../bearer_secret.js';
import { errorResponses } from '../schemas.js';

/**
 * `GET /metrics` (Prometheus). It says how many sessions and users there are and
 * how the server is doing, so it is not for everyone: with `--metrics-token` it
 * answers that bearer token from anywhere, without one only loopback clients (a
 * scraper on the same machine, or a sidecar). Both the connection and the client
 * address `--trust-proxy` yields must be loopback: a forged X-Forwarded-For through a
 * remote proxy does not pass, and a proxy on the same host does not make the world local.
 */
export function metricsRoute(app: FastifyInstance, ctx: AuthContext): void {
  const token = ctx.config.metricsToken === undefined ? undefined : new BearerSecret(ctx.config.metricsToken);
  app.get(
    '/metrics',
    {
      schema: {
        operationId: 'metrics',
        security: token ? [{ bearer: [] }] : [],
        tags: ['health'],
        summary: 'Prometheus metrics: loopback clients only, or anyone with the --metrics-token',
        response: {
          200: { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } },
          ...errorResponses('invalid_token', 'forbidden'),
        },
      },
    },
    async (request, reply) => {
      if (token) {
        if (!token.presentedBy(request)) {
          reply.header('www-authenticate', 'Bearer realm="tessera-metrics"');
          throw new TesseraError('invalid_token', 'The metrics need their token: Authorization: Bearer <metrics token>.');
        }
      } else if (!isLoopback(request.socket.remoteAddress ?? '') || !isLoopback(request.ip)) {
        throw new TesseraError('forbidden', 'The metrics answer loopback clients only; start the server with --metrics-token to scrape them from elsewhere.');
      }
      reply.type(ctx.metrics.registry.contentType);
      return ctx.metrics.registry.metrics();
    },
  );
}

function isLoopback(ip: string): boolean {
  const address = ip.startsWith('::ffff:') ? ip.slice(7) : ip;
  if (isIP(address) === 4) return address.startsWith('127.');
  return address === '::1';
}
