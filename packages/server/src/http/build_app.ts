import type { IncomingMessage, ServerResponse } from 'node:http';
import cookie from '@fastify/cookie';
import staticFiles from '@fastify/static';
import swagger from '@fastify/swagger';
import { TesseraError } from '@tessera/protocol';
import Fastify, { type FastifyBaseLogger, type FastifyInstance, type FastifyReply, type FastifyRequest, LogController } from 'fastify';
import type { Histogram } from 'prom-client';
import type { AuthContext } from '../flows/context.js';
import { sendError } from './error_reply.js';
import { pathOf } from './request_context.js';
import { accountRecoveryRoutes } from './routes/account_recovery_routes.js';
import { accountRoutes } from './routes/account_routes.js';
import { adminRoutes } from './routes/admin_routes.js';
import { discoveryRoutes } from './routes/discovery_routes.js';
import { metricsRoute } from './routes/metrics_route.js';
import { mfaRoutes } from './routes/mfa_routes.js';
import { passkeyRoutes } from './routes/passkey_routes.js';
import { revocationRoutes } from './routes/revocation_routes.js';
import { tokenRoutes } from './routes/token_routes.js';
import { SHARED_SCHEMAS } from './schemas.js';

/**
 * The web app at `/`, with a strict Content-Security-Policy: scripts and styles
 * from this origin only (an injected script cannot run, so it cannot call the API
 * as the user), connections to this origin and the example business API.
 */
async function serveWebApp(app: FastifyInstance, root: string): Promise<void> {
  await app.register(staticFiles, { root, prefix: '/', wildcard: false, index: ['index.html'], cacheControl: false });
  // Callback hooks, not async ones: an async hook costs every request a promise and a
  // microtask hop, and these run on every answer (bench/README.md, refresh).
  app.addHook('onSend', (request, reply, payload, done) => {
    const type = String(reply.getHeader('content-type') ?? '');
    if (!type.startsWith('text/html')) {
      if (request.url.startsWith('/assets/')) reply.header('cache-control', 'public, max-age=31536000, immutable');
      return done(null, payload);
    }
    reply.header('cache-control', 'no-cache');
    reply.header(
      'content-security-policy',
      "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self' http://localhost:4001 http://127.0.0.1:4001; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    );
    reply.header('referrer-policy', 'no-referrer');
    reply.header('x-frame-options', 'DENY');
    done(null, payload);
  });
}

/** `now()` as an HTTP date (RFC 9110 §5.6.7), formatted once per second of that clock. */
function secondClock(now: () => number): () => string {
  let second = Number.NaN;
  let text = '';
  return () => {
    const t = Math.floor(now() / 1000);
    if (t !== second) {
      second = t;
      text = new Date(t * 1000).toUTCString();
    }
    return text;
  };
}

/**
 * The request-duration histogram's child for (method, route, status), made once:
 * prom-client hashes a label object on every `observe`, a map lookup is cheaper.
 * Methods, routes and statuses are few (unmatched URLs share one route label).
 */
function labelledOnce(histogram: Histogram<'method' | 'route' | 'status_code'>) {
  const children = new Map<string, ReturnType<typeof histogram.labels>>();
  return (method: string, route: string, status: number) => {
    const key = `${method} ${status} ${route}`;
    let child = children.get(key);
    if (!child) {
      child = histogram.labels({ method, route, status_code: String(status) });
      children.set(key, child);
    }
    return child;
  };
}

/** How long shutdown waits for requests already sent to be read before closing idle connections. */
const DRAIN_GRACE_MS = 300;

/** Request bodies here are a name and a password: 16 KiB is plenty, anything larger is refused. */
const BODY_LIMIT = 16 * 1024;

/**
 * Node's HTTP parser refused the bytes on a connection (headers over the size limit,
 * not HTTP at all, a request too slow to arrive): answer in the contract's shape if
 * the socket can still take it, then close it. Nothing of the request is echoed.
 */
function answerClientError(error: NodeJS.ErrnoException, socket: import('node:stream').Duplex): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  if (!socket.writable) {
    socket.destroy(error);
    return;
  }
  const message =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? 'The request headers are too large.'
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? 'The request took too long to arrive.'
        : 'The request is not valid HTTP.';
  // 400 as the contract's table gives invalid_request, for headers too large as well (not 431).
  const body = JSON.stringify({ error: 'invalid_request', message });
  socket.end(
    `HTTP/1.1 400 Bad Request\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n${body}`,
  );
}

/**
 * Fastify's per-request lines. It logs two at info for every request, which cost a
 * refresh 10 % of its throughput at the default level (0.055 ms of the event loop and
 * two writes). Security events, refusals and errors are logged where they happen; the
 * access line is at debug, one per request; a request that failed still logs at error.
 */
class AccessLog extends LogController {
  override incomingRequest(): void {}

  override requestCompleted(error: Error | null | undefined, request: FastifyRequest, reply: FastifyReply): void {
    if (error) reply.log.error({ req: request, res: reply, err: error, responseTime: reply.elapsedTime }, 'request errored');
    else reply.log.debug({ req: request, res: reply, responseTime: reply.elapsedTime }, 'request completed');
  }
}

/** The Fastify application of the auth server: routes only parse, call a flow and map the result. */
export async function buildApp(ctx: AuthContext): Promise<FastifyInstance> {
  const app = Fastify({
    loggerInstance: ctx.log as FastifyBaseLogger,
    bodyLimit: BODY_LIMIT,
    trustProxy: ctx.config.trustProxy,
    // Wrong-typed fields are refused, never coerced ("123" stays no number, 123 no string).
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
    // A request that reached an open connection before shutdown is served, not 503'd:
    // that is what draining means. New connections are refused once the server closes.
    return503OnClosing: false,
    logController: new AccessLog(),
    keepAliveTimeout: 5_000,
    // The router's own refusals answer in the contract's shape, without echoing the URL.
    frameworkErrors: (error, request, reply) =>
      sendError(
        request,
        reply,
        new TesseraError('invalid_request', error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'A part of the URL is too long.' : 'The URL is not valid (bad percent-encoding).', { cause: error }),
      ),
    // Requests Node's parser refuses before Fastify sees them (headers too large, not HTTP).
    clientErrorHandler: answerClientError,
  });

  // An `Expect` other than 100-continue: Node answers a bare 417, no body, outside the
  // contract's shape (and outside the OAuth form grant's). RFC 9110 §10.1.1 lets a server
  // ignore an expectation: nothing here needs one met, so the request is served as if it had none.
  app.server.on('checkExpectation', (request: IncomingMessage, response: ServerResponse) => app.server.emit('request', request, response));

  // An empty body with a JSON content type means "no body" (many clients send the
  // header on every POST); anything else goes through Fastify's safe parser,
  // which refuses __proto__ and constructor pollution.
  // Fastify's own parsers go, text/plain included: only these two parse bodies.
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (request, body, done) => {
    const text = body.toString();
    if (text.trim() === '') return done(null, undefined);
    parseJson(request, text, done);
  });

  // Any other content type is fine only without a body: clients (axios, curl -X POST)
  // label empty POSTs as forms. A non-empty body that is not JSON is refused.
  app.addContentTypeParser('*', { parseAs: 'string', bodyLimit: BODY_LIMIT }, (_request, body, done) => {
    if (body.toString().trim() === '') return done(null, undefined);
    done(Object.assign(new Error('The request body must be JSON (Content-Type: application/json).'), { statusCode: 415 }), undefined);
  });

  await app.register(cookie);
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'Tessera auth server',
        version: '0.1.0',
        description: 'Access + refresh token pairs with rotation and reuse detection. Every error is {error, message} with a stable code.',
      },
      components: {
        securitySchemes: {
          bearer: { type: 'http', scheme: 'bearer', bearerFormat: 'JWT', description: 'An access token of a session not bound to a key.' },
          dpop: {
            type: 'http',
            scheme: 'DPoP',
            description:
              'RFC 9449: an access token bound to a key (its `cnf.jkt`), as `Authorization: DPoP <token>`, with a `DPoP` header: a proof by that key ' +
              'over this method and URL and over the token (`ath`).',
          },
          refreshCookie: { type: 'apiKey', in: 'cookie', name: 'tessera_refresh' },
        },
      },
    },
    refResolver: { buildLocalReference: (json, _baseUri, _fragment, i) => String(json.$id ?? `def-${i}`) },
  });
  for (const schema of SHARED_SCHEMAS) app.addSchema(structuredClone(schema) as unknown as Record<string, unknown>);

  app.setErrorHandler((error, request, reply) => sendError(request, reply, error));
  app.setNotFoundHandler((request, reply) => sendError(request, reply, new TesseraError('not_found')));
  // Requests in flight when shutdown starts still get their answer, on a connection
  // that then closes: a keep-alive socket must not hold the process open.
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
    // Node's server.close() drops connections it sees as idle, and a connection whose
    // request is still in the socket buffer looks idle: give requests already on the
    // wire a moment to be read first.
    await new Promise((resolve) => setTimeout(resolve, DRAIN_GRACE_MS));
  });
  const httpDate = secondClock(() => ctx.now());
  app.addHook('onSend', (request, reply, payload, done) => {
    if (closing) reply.header('connection', 'close');
    // Token responses must never be cached (RFC 6749 §5.1); nor must anything under /auth.
    // By the matched route: `request.url` keeps an absolute-form target (`POST http://host/auth/login`)
    // as sent, which the router still serves as /auth/login.
    if ((request.routeOptions.url ?? pathOf(request.url)).startsWith('/auth/')) reply.header('cache-control', 'no-store');
    reply.header('x-content-type-options', 'nosniff');
    // The server's own clock (the one DPoP proofs' iat is checked against): a client
    // whose clock is off learns the offset here (RFC 9110 §6.6.1).
    reply.header('date', httpDate());
    // RFC 9449 §8.2: the nonce rides on every answer, so a client holds a fresh one before it needs it.
    if (ctx.dpopNonces) reply.header('dpop-nonce', ctx.dpopNonces.current());
    done(null, payload);
  });

  const durations = labelledOnce(ctx.metrics.requestDuration);
  app.addHook('onResponse', (request, reply, done) => {
    durations(request.method, request.routeOptions.url ?? 'unmatched', reply.statusCode).observe(reply.elapsedTime / 1000);
    done();
  });
  metricsRoute(app, ctx);

  if (ctx.config.webRoot) await serveWebApp(app, ctx.config.webRoot);

  tokenRoutes(app, ctx);
  accountRoutes(app, ctx);
  accountRecoveryRoutes(app, ctx);
  adminRoutes(app, ctx);
  mfaRoutes(app, ctx);
  passkeyRoutes(app, ctx);
  discoveryRoutes(app, ctx);
  const feed = revocationRoutes(app, ctx, {
    perAddress: ctx.config.feedStreamsPerAddress,
    total: ctx.config.feedMaxStreams,
    slowConsumerMs: ctx.config.feedSlowConsumerMs,
    heartbeatSeconds: ctx.config.feedHeartbeat,
  });
  ctx.metrics.observeFeed(() => ({ streams: feed.size, bufferedBytes: feed.bufferedBytes, head: ctx.revocations.head }));
  return app;
}
