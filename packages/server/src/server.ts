import { join } from 'node:path';
import { rootCertificates } from 'node:tls';
import { memoryReplayCache } from '@tessera/verify';
import type { FastifyInstance } from 'fastify';
import { ADMIN_SOCKET, startAdminChannel } from './admin_channel.js';
import type { RedisLink } from './cluster/redis_link.js';
import { MEMORY_DATA_DIR, type RateLimit, resolveConfig, type ServerConfig, type ServerOptions, sameUrl } from './config.js';
import type { AuthContext } from './flows/context.js';
import { DpopNonces } from './flows/dpop_nonces.js';
import { USER_GLOBAL_FACTOR } from './flows/rate_limits.js';
import { type RetentionJob, startRetention } from './flows/retention.js';
import { RevocationHub } from './flows/revocation_hub.js';
import { usernameSkeleton } from './flows/usernames.js';
import { buildApp } from './http/build_app.js';
import { KeyRing } from './keys/key_ring.js';
import { createLogger } from './lib/logger.js';
import { createMetrics } from './lib/metrics.js';
import { createDummyHash } from './lib/passwords.js';
import { localLimiter, RateLimiter } from './lib/rate_limiter.js';
import { createMailer, type Mailer } from './mail/mailer.js';
import { openDataDir } from './store/data_dir.js';
import type { Database } from './store/database.js';
import { migrate } from './store/migrations.js';
import { openPostgresDatabase } from './store/open_postgres_database.js';
import { openPgliteDatabase } from './store/pglite_database.js';
import { Store } from './store/store.js';


export interface AuthServer {
  readonly app: FastifyInstance;
  readonly context: AuthContext;
  readonly config: Readonly<ServerConfig>;
  /** Deletes now what `retention` has passed (the server also does it every hour). */
  prune: RetentionJob['run'];
  /** Starts listening; resolves to the base URL (with the port chosen when `port` is 0). */
  listen(): Promise<string>;
  /** Stops accepting, drains in-flight requests, closes the database, releases the data directory. */
  close(): Promise<void>;
}

/**
 * Opens the database (migrating it), loads the key ring and builds the HTTP app.
 *
 * @example
 * const server = await createAuthServer({ port: 0, dataDir: './.tessera' })
 * const url = await server.listen()
 */
export async function createAuthServer(options: ServerOptions = {}): Promise<AuthServer> {
  const config = resolveConfig(options);
  const log = createLogger(config.log, config.logStream);
  const { db, release } = await openDatabase(config);
  let issuer = config.issuer;
  let mailer: Mailer | undefined;
  try {
    await migrate(db);
    // The hub needs the store, and the store's revocation hook wakes the hub: tie the knot late.
    let hub: RevocationHub | undefined;
    const store = new Store(
      db,
      (entry) => log.info({ audit: entry }, entry.event),
      () => {
        // Committed: this instance's feed reads it now, the others when Redis tells them
        // (or at their next database poll while Redis is down).
        hub?.wake();
        redis?.publishRevocation();
      },
    );
    const filled = await store.users.fillSkeletons(usernameSkeleton);
    if (filled) log.info({ users: filled }, 'username skeletons filled in for older users');
    hub = await RevocationHub.open({ store, accessTtl: config.accessTtl, now: config.clock, log, pollIntervalMs: Math.max(100, config.revocationPoll * 1000) });
    const keys = await KeyRing.load(store, {
      alg: config.alg,
      privateKeyFile: config.privateKeyFile,
      keyEncryptionKey: config.keyEncryptionKey,
      refreshTtl: config.refreshTtl,
      now: config.clock,
    });
    // Rotations by the CLI or another instance, and keys becoming active or expiring.
    const reloadTimer = config.keyReloadInterval > 0
      ? setInterval(() => keys.reload().catch((error: unknown) => log.error({ err: error }, 'key ring reload failed')), config.keyReloadInterval * 1000)
      : undefined;
    reloadTimer?.unref();
    // ioredis (7 MB) is loaded only by servers that use Redis.
    const redis = config.redisUrl ? (await import('./cluster/redis_link.js')).RedisLink.connect(config.redisUrl, log) : undefined;
    mailer = config.smtpUrl
      ? createMailer({ smtpUrl: config.smtpUrl, from: config.mailFrom, log, ...(config.smtpCa ? { tls: { ca: [...rootCertificates, config.smtpCa].join('\n') } } : {}) })
      : undefined;
    const issuerUrl = () => issuer ?? `http://localhost:${config.port}`;
    const context: AuthContext = {
      config,
      store,
      keys,
      mailer,
      publicUrl: () => config.publicUrl ?? issuerUrl(),
      issuer: issuerUrl,
      now: config.clock,
      dummyHash: await createDummyHash(),
      limits: createLimits(config, redis),
      log,
      revocations: hub,
      dpopReplay: redis ? redis.replayCache() : memoryReplayCache(),
      dpopNonces: config.dpopNonce ? new DpopNonces(await store.secrets.get('dpop-nonce'), config.clock) : undefined,
      metrics: createMetrics({
        // A count(*) over sessions: at most one per 15 s however often /metrics is scraped
        // (on single-connection PGlite every query waits its turn with the logins).
        activeSessions: cachedFor(15_000, () => store.sessions.countActive(new Date(config.clock()))),
        keys: () => keys.describe(),
        redisHealthy: redis ? () => redis.healthy : undefined,
      }),
      announceKeysChanged: () => redis?.publishKeysChanged(),
    };
    await redis?.subscribe({
      revoked: () => hub?.wake(),
      keysChanged: () => void keys.reload().catch((error: unknown) => log.error({ err: error }, 'key ring reload failed')),
    });
    const app = await buildApp(context);
    // Operators reach a server that holds the embedded database through its admin socket.
    const dir = embeddedDir(config);
    const admin = dir
      ? await startAdminChannel(join(dir, ADMIN_SOCKET), {
          store,
          mailer,
          publicUrl: context.publicUrl,
          keys,
          onKeysChanged: context.announceKeysChanged,
          now: config.clock,
          alg: config.alg,
          keyActivationDelay: config.jwksMaxAge,
          keyEncryptionKey: config.keyEncryptionKey,
        })
      : undefined;
    const retention = startRetention({ store, log, now: config.clock, retentionSeconds: config.retention });
    let closed = false;
    return {
      app,
      context,
      config,
      prune: retention.run,
      async listen() {
        await app.listen({ port: config.port, host: config.host });
        const address = app.server.address();
        const port = typeof address === 'object' && address ? address.port : config.port;
        issuer ??= `http://localhost:${port}`;
        if (sameUrl(config.audience, issuer)) {
          throw new TypeError('audience: must differ from the issuer (the issuer is the audience of refresh tokens)');
        }
        if (config.feedSecret === undefined && !isLoopback(config.host)) {
          log.warn(
            { host: config.host },
            'the revocation feed is open to anyone who can reach this address: set --feed-secret (TESSERA_FEED_SECRET) and give it to your verifiers',
          );
        }
        const host = config.host.includes(':') ? `[${config.host}]` : config.host;
        return `http://${host === '0.0.0.0' || host === '[::]' ? 'localhost' : host}:${port}`;
      },
      async close() {
        if (closed) return;
        closed = true;
        try {
          if (reloadTimer) clearInterval(reloadTimer);
          retention.stop();
          await admin?.close();
          await redis?.close();
          await app.close();
          await mailer?.close();
          hub.close();
          await store.close();
        } finally {
          release();
        }
      },
    };
  } catch (error) {
    await mailer?.close().catch(() => {});
    await db.close().catch(() => {});
    release();
    throw error;
  }
}

function createLimits(config: ServerConfig, redis: RedisLink | undefined): AuthContext['limits'] {
  const { ip, user } = config.rateLimit;
  const reportedAt = new Map<string, number>();
  const window = Math.max(ip.windowSeconds, user.windowSeconds) * 1000;
  const make = (name: string, limit: RateLimit) => (redis ? redis.limiter(name, limit) : localLimiter(new RateLimiter(limit)));
  return {
    ip: make('ip', ip),
    user: make('user', user),
    userGlobal: make('account', { max: user.max * USER_GLOBAL_FACTOR, windowSeconds: user.windowSeconds }),
    mail: make('mail', { max: config.mailPerHour, windowSeconds: 3600 }),
    reported(key, now) {
      const last = reportedAt.get(key);
      if (last !== undefined && now - last < window) return false;
      if (reportedAt.size > 100_000) reportedAt.clear();
      reportedAt.set(key, now);
      return true;
    },
  };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || host === '[::1]' || /^127\.\d+\.\d+\.\d+$/.test(host);
}

function embeddedDir(config: ServerConfig): string | undefined {
  return config.databaseUrl || config.dataDir === MEMORY_DATA_DIR ? undefined : config.dataDir;
}

async function openDatabase(config: ServerConfig): Promise<{ db: Database; release: () => void }> {
  if (config.databaseUrl) {
    return { db: await openPostgresDatabase({ url: config.databaseUrl, poolSize: config.databasePoolSize }), release: () => {} };
  }
  if (config.dataDir === MEMORY_DATA_DIR) return { db: await openPgliteDatabase(undefined), release: () => {} };
  return openDataDir(config.dataDir);
}

/** `load`, run at most once per `ms`: callers within that time share the last answer (or the one in flight). */
function cachedFor<T>(ms: number, load: () => Promise<T>): () => Promise<T> {
  let last: { at: number; value: Promise<T> } | undefined;
  return () => {
    const now = performance.now();
    if (!last || now - last.at >= ms) {
      const value = load();
      last = { at: now, value };
      value.catch(() => {
        if (last?.value === value) last = undefined; // a failure is not kept
      });
    }
    return last.value;
  };
}
