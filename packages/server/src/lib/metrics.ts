import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

/** The server's Prometheus metrics, in a registry of its own (several servers may share a process). */
export interface Metrics {
  registry: Registry;
  logins: Counter<'outcome'>;
  refreshes: Counter<'outcome'>;
  rateLimited: Counter<'scope'>;
  requestDuration: Histogram<'method' | 'route' | 'status_code'>;
  feedStreamsOpened: Counter;
  feedStreamsDropped: Counter<'reason'>;
  feedStreamsRefused: Counter<'scope'>;
  /** Reports the feed's open streams and their unsent bytes at each scrape. */
  observeFeed(source: () => { streams: number; bufferedBytes: number; head: number }): void;
}

export function createMetrics(sources: {
  activeSessions: () => Promise<number>;
  keys: () => { kid: string; alg: string; ageSeconds: number; signing: boolean }[];
  /** Whether Redis answers; `undefined` when the server runs without Redis. */
  redisHealthy?: () => boolean;
}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'tessera_' });
  let feed: (() => { streams: number; bufferedBytes: number; head: number }) | undefined;
  const metrics: Metrics = {
    registry,
    feedStreamsOpened: new Counter({ name: 'tessera_feed_streams_opened_total', help: 'Revocation event streams opened', registers: [registry] }),
    feedStreamsDropped: new Counter({
      name: 'tessera_feed_streams_dropped_total',
      help: 'Revocation streams ended by the server: slow_consumer (its socket took nothing for too long), buffer, shutdown',
      labelNames: ['reason'],
      registers: [registry],
    }),
    feedStreamsRefused: new Counter({
      name: 'tessera_feed_streams_refused_total',
      help: 'Revocation streams refused (the client pages the JSON feed instead): address (per-address cap), instance (memory cap)',
      labelNames: ['scope'],
      registers: [registry],
    }),
    observeFeed(source) {
      feed = source;
    },
    logins: new Counter({ name: 'tessera_logins_total', help: 'Password logins by outcome', labelNames: ['outcome'], registers: [registry] }),
    refreshes: new Counter({
      name: 'tessera_refreshes_total',
      help: 'Refreshes by outcome: rotated, grace_replay, reused, revoked, expired, invalid',
      labelNames: ['outcome'],
      registers: [registry],
    }),
    rateLimited: new Counter({ name: 'tessera_rate_limited_total', help: 'Requests refused by a rate limit', labelNames: ['scope'], registers: [registry] }),
    requestDuration: new Histogram({
      name: 'tessera_http_request_duration_seconds',
      help: 'HTTP request latency by route',
      labelNames: ['method', 'route', 'status_code'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers: [registry],
    }),
  };
  new Gauge({
    name: 'tessera_active_sessions',
    help: 'Sessions neither revoked nor expired',
    registers: [registry],
    async collect() {
      this.set(await sources.activeSessions().catch(() => Number.NaN));
    },
  });
  new Gauge({
    name: 'tessera_signing_key_age_seconds',
    help: 'Age of each published signing key',
    labelNames: ['kid', 'alg', 'signing'],
    registers: [registry],
    collect() {
      this.reset();
      for (const key of sources.keys()) this.set({ kid: key.kid, alg: key.alg, signing: String(key.signing) }, key.ageSeconds);
    },
  });
  new Gauge({
    name: 'tessera_feed_streams',
    help: 'Open revocation event streams on this instance',
    registers: [registry],
    collect() {
      this.set(feed?.().streams ?? 0);
    },
  });
  new Gauge({
    name: 'tessera_feed_buffered_bytes',
    help: 'Bytes written to revocation streams that their sockets have not taken yet',
    registers: [registry],
    collect() {
      this.set(feed?.().bufferedBytes ?? 0);
    },
  });
  new Gauge({
    name: 'tessera_feed_position',
    help: 'The last revocation this instance has read (the feed numbers revocations in commit order)',
    registers: [registry],
    collect() {
      this.set(feed?.().head ?? 0);
    },
  });
  if (sources.redisHealthy) {
    const healthy = sources.redisHealthy;
    new Gauge({
      name: 'tessera_redis_up',
      help: '1 while Redis answers; 0 while this instance runs on its own limits and database polling',
      registers: [registry],
      collect() {
        this.set(healthy() ? 1 : 0);
      },
    });
  }
  // Pre-create the label sets so a scrape shows zeros, not absences.
  for (const outcome of ['success', 'invalid_credentials', 'account_disabled', 'rate_limited']) metrics.logins.inc({ outcome }, 0);
  for (const outcome of ['rotated', 'grace_replay', 'reused', 'revoked', 'expired', 'invalid']) metrics.refreshes.inc({ outcome }, 0);
  for (const scope of ['ip', 'user']) metrics.rateLimited.inc({ scope }, 0);
  for (const reason of ['slow_consumer', 'buffer', 'shutdown']) metrics.feedStreamsDropped.inc({ reason }, 0);
  for (const scope of ['address', 'instance']) metrics.feedStreamsRefused.inc({ scope }, 0);
  return metrics;
}
