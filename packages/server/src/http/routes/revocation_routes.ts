import { TesseraError } from '@tessera/protocol';
import type { FastifyInstance } from 'fastify';
import type { AuthContext } from '../../flows/context.js';
import { addressGroup } from '../../flows/rate_limits.js';
import { BearerSecret } from '../bearer_secret.js';
import { type FeedStreamLimits, FeedStreams, revocationJson } from '../feed_streams.js';
import { CURSOR_PATTERN, errorResponses } from '../schemas.js';

const revocationSchema = {
  type: 'object',
  properties: {
    session_id: { type: 'string', format: 'uuid' },
    revoked_at: { type: 'string', format: 'date-time' },
    remember_until: { type: 'string', format: 'date-time', description: 'after this every access token of the session has expired' },
  },
  required: ['session_id', 'revoked_at', 'remember_until'],
} as const;

/**
 * The revocation feed for stateless verifiers: sessions revoked within the last
 * access-token lifetime (older ones need no telling: their access tokens have
 * expired), oldest first, a page at a time. `?since=<cursor>` continues after a
 * page; with `Accept: text/event-stream` the backlog and then live revocations
 * stream as `revoked` events whose id is the cursor, with a `heartbeat` every few
 * seconds so that a subscriber can tell a quiet feed from a dead one.
 */
export function revocationRoutes(app: FastifyInstance, ctx: AuthContext, limits: FeedStreamLimits): FeedStreams {
  const hub = ctx.revocations;
  const streams = new FeedStreams(hub, limits, ctx.log, {
    opened: () => ctx.metrics.feedStreamsOpened.inc(),
    dropped: (reason) => ctx.metrics.feedStreamsDropped.inc({ reason }),
  });
  // Open streams would hold the server open: end them so shutdown can drain.
  app.addHook('preClose', async () => streams.close());
  const secret = ctx.config.feedSecret === undefined ? undefined : new BearerSecret(ctx.config.feedSecret);

  app.get<{ Querystring: { since?: string } }>(
    '/auth/revocations',
    {
      schema: {
        operationId: 'listRevocations',
        tags: ['revocation'],
        summary: 'Sessions revoked within the last access-token lifetime, a page at a time (JSON), or streamed (SSE with Accept: text/event-stream)',
        querystring: {
          type: 'object',
          properties: {
            since: {
              type: 'string',
              maxLength: 28,
              pattern: CURSOR_PATTERN,
              description: 'the cursor of a previous page, or the id of the last event; a foreign or impossible one is 400 invalid_request as well',
            },
          },
          additionalProperties: false,
        },
        headers: {
          type: 'object',
          properties: {
            'last-event-id': {
              type: 'string',
              maxLength: 28,
              pattern: CURSOR_PATTERN,
              description: 'SSE resumption (sent by EventSource): the id of the last event seen; ?since= wins',
            },
          },
        },
        security: secret ? [{ bearer: [] }] : [],
        response: {
          200: {
            type: 'object',
            properties: {
              revocations: { type: 'array', items: revocationSchema },
              cursor: { type: 'string', description: 'opaque: pass it back as ?since= for what comes next' },
              more: { type: 'boolean', description: 'true when the next page is already there: ask again at once' },
            },
            required: ['revocations', 'cursor', 'more'],
          },
          ...errorResponses('invalid_request', 'invalid_token', 'rate_limited', 'unavailable'),
        },
      },
    },
    async (request, reply) => {
      if (secret && !secret.presentedBy(request)) throw new TesseraError('invalid_token', 'The revocation feed needs its secret: Authorization: Bearer <feed secret>.');
      const lastEventId = request.headers['last-event-id'];
      const after = await hub.parseCursor(request.query.since ?? (typeof lastEventId === 'string' ? lastEventId : undefined));
      if (!hub.fresh) {
        // Cut off from the database: what this instance knows may be behind, so it must not say "up to date".
        throw new TesseraError('unavailable', 'This instance cannot read revocations right now; try another.', { retryAfter: 5 });
      }
      if (!(request.headers.accept ?? '').includes('text/event-stream')) {
        const slice = await hub.page(after);
        return { revocations: slice.revocations.map(revocationJson), cursor: hub.cursor(slice.after), more: slice.more };
      }
      const address = addressGroup(request.ip);
      const admission = streams.admit(address);
      if (!admission.ok) {
        ctx.metrics.feedStreamsRefused.inc({ scope: admission.scope });
        throw admission.scope === 'address'
          ? new TesseraError('rate_limited', 'Too many revocation streams from this address: page the JSON feed instead.', { retryAfter: 30 })
          : new TesseraError('unavailable', 'This instance holds all the revocation streams it can: page the JSON feed instead.', { retryAfter: 30 });
      }
      reply.hijack();
      streams.open(reply.raw, address, after);
    },
  );
  return streams;
}

