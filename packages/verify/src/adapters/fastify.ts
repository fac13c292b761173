import type { AccessTokenClaims } from '@tessera/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { authScheme, checkRole, errorResponse } from '../bearer.js';
import type { Verifier } from '../create_verifier.js';
import { headerValues, parsePublicUrl, requestUrl } from '../request_url.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified access token's claims; `null` on routes without `requireAuth`. */
    auth: AccessTokenClaims | null;
  }
}

export interface TesseraAuthOptions {
  verifier: Verifier;
  /**
   * The URL clients reach this app at, e.g. `https://api.example.com` (with a path when
   * a proxy strips it: `https://example.com/api`). DPoP proofs must name it (`htu`).
   * Without it, the URL is `request.protocol://request.host` and the path, which Fastify
   * takes from the `Host` header, or from `X-Forwarded-Proto`/`-Host` with `trustProxy`.
   * Set it in production: the `Host` header is then not relied on.
   */
  publicUrl?: string;
}

/**
 * Fastify plugin: decorates `request.auth`; protect routes with the `requireAuth`
 * and `requireRole` pre-handlers it returns through `app.tessera`. `requireAuth`
 * takes `Authorization: Bearer <token>`, or `DPoP <token>` with its `DPoP` proof for a
 * token bound to a key (RFC 9449 §7).
 *
 * @example
 * await app.register(tesseraAuth, { verifier })
 * app.get('/api/profile', { preHandler: app.tessera.requireAuth }, async (req) => ({ user: req.auth!.username }))
 * app.get('/api/admin', { preHandler: [app.tessera.requireAuth, app.tessera.requireRole('admin')] }, handler)
 */
export async function tesseraAuth(app: FastifyInstance, options: TesseraAuthOptions): Promise<void> {
  const { verifier } = options;
  const publicUrl = parsePublicUrl(options.publicUrl, 'tesseraAuth');
  app.decorateRequest('auth', null);
  const requireAuth: preHandlerAsyncHookHandler = async (request: FastifyRequest, reply: FastifyReply) => {
    try {
      const raw = request.raw.rawHeaders;
      request.auth = await verifier.verifyRequest({
        authorization: headerValues(request.headers, raw, 'authorization'),
        dpop: headerValues(request.headers, raw, 'dpop'),
        method: request.method,
        url: requestUrl(publicUrl, request.protocol, request.host, request.raw.url ?? request.url),
      });
    } catch (error) {
      return send(request, reply, error);
    }
  };
  app.decorate('tessera', {
    requireAuth,
    requireRole(role: string): preHandlerAsyncHookHandler {
      return async (request: FastifyRequest, reply: FastifyReply) => {
        try {
          checkRole(request.auth ?? undefined, role);
        } catch (error) {
          return send(request, reply, error);
        }
      };
    },
  });
}
// Skip Fastify's encapsulation (what fastify-plugin does), so the decorations reach the routes.
(tesseraAuth as unknown as Record<symbol, unknown>)[Symbol.for('skip-override')] = true;

declare module 'fastify' {
  interface FastifyInstance {
    tessera: {
      requireAuth: preHandlerAsyncHookHandler;
      requireRole(role: string): preHandlerAsyncHookHandler;
    };
  }
}

function send(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  const { status, headers, body } = errorResponse(error, { scheme: authScheme(request.headers.authorization) });
  return reply.code(status).headers(headers).send(body);
}
