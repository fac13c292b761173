import type { Logger } from 'pino';
import type { Store } from '../store/store.js';

export interface RetentionJob {
  /** Deletes now what the retention period has passed (also what the timer runs). */
  run(): Promise<{ auditEvents: number; sessions: number }>;
  stop(): void;
}

/**
 * Keeps the audit log and the sessions table from growing forever: every hour (the
 * first run a minute after start; each delay jittered by up to 10 %, so instances
 * sharing a database do not all prune at the same moment), deletes audit events
 * older than `retentionSeconds` and sessions that ended that long ago. With
 * `retentionSeconds` 0 it never deletes anything.
 */
export function startRetention(options: { store: Store; log: Logger; now: () => number; retentionSeconds: number }): RetentionJob {
  const { store, log, now, retentionSeconds } = options;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let stopped = false;
  const run = async () => {
    if (retentionSeconds === 0) return { auditEvents: 0, sessions: 0 };
    const before = new Date(now() - retentionSeconds * 1000);
    const deleted = await store.prune(before);
    if (deleted.auditEvents + deleted.sessions > 0) log.info({ retention: { before, ...deleted } }, 'retention: deleted old audit events and ended sessions');
    return deleted;
  };
  const schedule = (ms: number) => {
    if (stopped || retentionSeconds === 0) return;
    timer = setTimeout(() => {
      run()
        .catch((error: unknown) => log.warn({ err: error }, 'retention run failed; next try in an hour'))
        .finally(() => schedule(3_600_000));
    }, ms * (1 + Math.random() * 0.1));
    timer.unref();
  };
  schedule(60_000);
  return {
    run,
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
    },
  };
}
