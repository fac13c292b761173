import type { AccessTokenClaims } from '@tessera/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest, preHandlerAsyncHookHandler } from 'fastify';
import { checkRole, errorResponse, parseBearer } from '../bearer.js';
import type { Verifier } from '../create_verifier.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The verified access token's claims; `null` on routes without `requireAuth`. */
    auth: AccessTokenClaims | null;
  }
}

export interface TesseraAuthOptions {
  verifier: Verifier;
}

/**
 * Fastify plugin: decorates `request.auth`; protect routes with the `requireAuth`
 * and `requireRole` pre-handlers it returns through `app.tessera`.
 *
 * @example
 * await app.register(tesseraAuth, { verifier })
 * app.get('/api/profile', { preHandler: app.tessera.requireAuth }, async (req) => ({ user: req.auth!.username }))
 * app.get('/api/admin', { preHandler: [app.tessera.requireAuth, app.tessera.requireRole('admin')] }, handler)
 */
export async function tesseraAuth(app: FastifyInstance, options: TesseraAuthOptions): Promise<void> {
  const { verifier } = options;
  app.decorateRequest('auth', null);
  const requireAuth: preHandlerAsyncHookHandler = async (request: FastifyRequest, reply: FastifyReply) => {
    try {
      request.auth = await verifier.verify(parseBearer(request.headers.authorization));
    } catch (error) {
      return send(reply, error);
    }
  };
  app.decorate('tessera', {
    requireAuth,
    requireRole(role: string): preHandlerAsyncHookHandler {
      return async (request: FastifyRequest, reply: FastifyReply) => {
        try {
          checkRole(request.auth ?? undefined, role);
        } catch (error) {
          return send(reply, error);
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

function send(reply: FastifyReply, error: unknown): FastifyReply {
  const { status, headers, body } = errorResponse(error);
  return reply.code(status).headers(headers).send(body);
}
