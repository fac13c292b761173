import cors from '@fastify/cors';
import { createVerifier } from '@tessera/verify';
import { tesseraAuth } from '@tessera/verify/fastify';
import Fastify, { type FastifyInstance } from 'fastify';

export interface BusinessApiOptions {
  /** The auth server's issuer. Default `http://localhost:4000`. */
  issuer?: string;
  /** Where the auth server is reached (JWKS, revocation feed). Default: the issuer. */
  authUrl?: string;
  /** The `aud` this API accepts. Default `tessera-api`. */
  audience?: string;
  /** The auth server's `--feed-secret`, when it has one. */
  feedSecret?: string;
  /** Browser origins allowed to call this API (the web app). Default: the auth server's. */
  corsOrigins?: string[];
  /**
   * The URL browsers use to reach this API (e.g. `https://api.example.com`): DPoP proofs
   * name it (`htu`), and behind a proxy the request's own `Host` may say otherwise.
   * Default: the request's `Host`.
   */
  publicUrl?: string;
  clock?: () => number;
}

/**
 * The design notes' business server: holds no secret, verifies each access token
 * with the auth server's public keys, answers 401 so the client knows to refresh,
 * and learns of logouts from the revocation feed.
 */
export async function buildBusinessApi(options: BusinessApiOptions = {}): Promise<FastifyInstance> {
  const issuer = options.issuer ?? 'http://localhost:4000';
  const authUrl = (options.authUrl ?? issuer).replace(/\/+$/, '');
  const verifier = createVerifier({
    issuer,
    audience: options.audience ?? 'tessera-api',
    jwksUri: `${authUrl}/.well-known/jwks.json`,
    revocation: { url: `${authUrl}/auth/revocations`, secret: options.feedSecret },
    // A client calls with the same access token until it refreshes: verify it once.
    // Logouts still apply at once (the revocation check runs on every cache hit).
    cache: true,
    clock: options.clock,
  });

  const app = Fastify({ logger: false });
  const origins = options.corsOrigins ?? sameHostOrigins([issuer, authUrl]);
  await app.register(cors, {
    origin: origins,
    // DPoP: the proof goes in its own header, and a refusal's reasons in WWW-Authenticate (and a server nonce, if any).
    allowedHeaders: ['authorization', 'content-type', 'dpop'],
    exposedHeaders: ['www-authenticate', 'dpop-nonce'],
    maxAge: 600,
  });
  await app.register(tesseraAuth, { verifier, ...(options.publicUrl ? { publicUrl: options.publicUrl } : {}) });
  app.addHook('onClose', async () => verifier.close());

  app.get('/api/public', async () => ({ message: 'Anyone can read this.' }));

  // Ready once the revocation feed has been read: before that a logout might not be known yet.
  app.get('/readyz', async (_request, reply) => {
    const feed = verifier.revocationStatus()!;
    return reply.code(feed.caughtUp && !feed.stale ? 200 : 503).send({ revocation_feed: feed });
  });

  app.get('/api/profile', { preHandler: app.tessera.requireAuth }, async (request) => {
    const auth = request.auth!;
    return { id: auth.sub, username: auth.username, roles: auth.roles, session_id: auth.sid, message: `Hello, ${auth.username}.` };
  });

  app.get('/api/admin', { preHandler: [app.tessera.requireAuth, app.tessera.requireRole('admin')] }, async (request) => ({
    message: `Welcome to the admin area, ${request.auth!.username}.`,
  }));

  return app;
}

/** The auth server's origins, under both loopback names (the web app may be opened as either). */
function sameHostOrigins(urls: string[]): string[] {
  const origins = new Set<string>();
  for (const url of urls) {
    const u = new URL(url);
    origins.add(u.origin);
    if (u.hostname === 'localhost' || u.hostname === '127.0.0.1') {
      for (const host of ['localhost', '127.0.0.1']) origins.add(`${u.protocol}//${host}${u.port ? `:${u.port}` : ''}`);
    }
  }
  return [...origins];
}
