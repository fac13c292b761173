import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { AuthContext } from '../../flows/context.js';
import type { Revocation } from '../../flows/revocation_hub.js';
import { errorResponses } from '../schemas.js';

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
 * expired). `?since=<cursor>` resumes; with `Accept: text/event-stream` it streams
 * `revoked` events as they happen, and a `heartbeat` event every few seconds so a
 * subscriber can tell a quiet feed from a dead one.
 */
export function revocationRoutes(app: FastifyInstance, ctx: AuthContext, options: { heartbeatSeconds: number }): void {
  const streams = new Set<FastifyReply>();
  app.addHook('preClose', async () => {
    // Open streams would hold the server open: end them so shutdown can drain.
    for (const reply of streams) reply.raw.end();
    streams.clear();
  });

  app.get<{ Querystring: { since?: string } }>(
    '/auth/revocations',
    {
      schema: {
        tags: ['revocation'],
        summary: 'Sessions revoked within the last access-token lifetime (JSON, or SSE with Accept: text/event-stream)',
        querystring: {
          type: 'object',
          properties: { since: { type: 'string', pattern: '^[0-9]{1,15}$', description: 'the cursor of a previous answer or event id' } },
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            properties: { revocations: { type: 'array', items: revocationSchema }, cursor: { type: 'string' } },
            required: ['revocations', 'cursor'],
          },
          ...errorResponses('invalid_request', 'unavailable'),
        },
      },
    },
    async (request, reply) => {
      const lastEventId = request.headers['last-event-id'];
      const cursorText = request.query.since ?? (typeof lastEventId === 'string' && /^[0-9]{1,15}$/.test(lastEventId) ? lastEventId : undefined);
      const since = cursorText === undefined ? undefined : Number(cursorText);
      const backlog = await ctx.revocations.since(since);
      const cursor = String(backlog.reduce((max, r) => Math.max(max, r.revokedAt.getTime()), since ?? 0));
      if (!(request.headers.accept ?? '').includes('text/event-stream')) {
        return { revocations: backlog.map(toJson), cursor };
      }
      return stream(request, reply, backlog);
    },
  );

  function stream(request: FastifyRequest, reply: FastifyReply, backlog: Revocation[]) {
    const send = (r: Revocation) => reply.raw.write(`event: revoked\nid: ${r.revokedAt.getTime()}\ndata: ${JSON.stringify(toJson(r))}\n\n`);
    const buffered: Revocation[] = [];
    const unsubscribe = ctx.revocations.subscribe((r) => buffered.push(r));
    if (!unsubscribe) {
      return reply.code(503).header('retry-after', '30').send({ error: 'unavailable', message: 'Too many revocation subscribers on this instance.' });
    }
    reply.hijack();
    reply.raw.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    streams.add(reply);
    // Catch up first, then live: events that arrived meanwhile were buffered.
    for (const r of backlog) send(r);
    for (const r of buffered) send(r);
    unsubscribe();
    const live = ctx.revocations.subscribe(send) ?? (() => {});
    const heartbeat = () => reply.raw.write(`event: heartbeat\ndata: {"at":"${new Date(ctx.now()).toISOString()}"}\n\n`);
    heartbeat();
    const timer = setInterval(heartbeat, options.heartbeatSeconds * 1000);
    timer.unref();
    request.raw.on('close', () => {
      clearInterval(timer);
      live();
      streams.delete(reply);
    });
  }
}

function toJson(r: Revocation) {
  return { session_id: r.sessionId, revoked_at: r.revokedAt.toISOString(), remember_until: r.rememberUntil.toISOString() };
}
