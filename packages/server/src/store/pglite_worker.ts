/**
 * The embedded database's own thread: PGlite (PostgreSQL in WebAssembly) runs here,
 * so its CPU time is spent beside the server's event loop instead of on it.
 * `pglite_database.ts` talks to it with the messages below.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { PGlite } from '@electric-sql/pglite';
import { PreparedStatements } from './pglite_statements.js';
import { POSTGRESQL_CONF, pgliteTemplate } from './pglite_template.js';

export interface PgliteWorkerData {
  /** A data directory, or undefined for memory only (from the template). */
  dataDir: string | undefined;
}

export type PgliteRequest =
  | { id: number; kind: 'query'; tx?: number; sql: string; params: unknown[] }
  | { id: number; kind: 'exec'; sql: string }
  | { id: number; kind: 'begin' }
  | { id: number; kind: 'commit' | 'rollback'; tx: number }
  | { id: number; kind: 'close' };

/** What a request returns: rows for a query, a transaction's id for a begin. */
export interface PgliteAnswer {
  rows?: unknown[];
  rowCount?: number;
  tx?: number;
  /** The first message, once PGlite is open (id 0). */
  ready?: true;
}

export type PgliteReply = ({ id: number; ok: true } & PgliteAnswer) | { id: number; ok: false; error: SerializedError };

/** A database error as data: its message and the fields callers read (code, constraint, detail…). */
export type SerializedError = { message: string } & Record<string, string | number | undefined>;

/** Thrown inside a transaction's callback to have PGlite roll it back. */
const ROLLBACK = Symbol('rollback');

if (parentPort) {
  const port = parentPort;
  const { dataDir } = workerData as PgliteWorkerData;
  try {
    const loadDataDir = dataDir === undefined ? await pgliteTemplate() : undefined;
    const db = await PGlite.create(dataDir ?? 'memory://', { postgresqlconf: POSTGRESQL_CONF, loadDataDir });
    const statements = new PreparedStatements(db);
    // PGlite's own locks, as `query` takes them: a statement outside a transaction waits
    // for any open one to end; one inside it only for the statement before it.
    const alone = <T>(fn: () => Promise<T>) => db._runExclusiveTransaction(() => db._runExclusiveQuery(fn));
    // Open transactions: their statements run through `statements` under the query lock
    // while PGlite's `transaction` holds the transaction lock until `finish` decides.
    const open = new Map<number, { finish: (commit: boolean) => void; done: Promise<unknown> }>();
    let nextTx = 1;

    const begin = async (): Promise<number> => {
      const id = nextTx++;
      let start!: () => void;
      let finish!: (commit: boolean) => void;
      const started = new Promise<void>((resolve) => {
        start = resolve;
      });
      const decided = new Promise<boolean>((resolve) => {
        finish = resolve;
      });
      const done = db.transaction(async () => {
        start();
        if (!(await decided)) throw ROLLBACK;
      });
      // A BEGIN that failed never called back: report it instead of waiting forever.
      await Promise.race([started, done.then(() => Promise.reject(new Error('the transaction did not start')))]);
      open.set(id, { finish, done });
      return id;
    };

    const end = async (id: number, commit: boolean): Promise<void> => {
      const entry = open.get(id);
      if (!entry) return;
      open.delete(id);
      entry.finish(commit);
      try {
        await entry.done;
      } catch (error) {
        if (error !== ROLLBACK) throw error;
      }
    };

    const handle = async (request: PgliteRequest): Promise<PgliteReply> => {
      switch (request.kind) {
        case 'query': {
          const { sql, params } = request;
          if (request.tx !== undefined && !open.has(request.tx)) throw new Error('no such transaction');
          const result =
            request.tx === undefined
              ? await alone(async () => {
                  const outcome = await statements.query(sql, params);
                  await db.syncToFs();
                  return outcome;
                })
              : await db._runExclusiveQuery(() => statements.query(sql, params));
          return { id: request.id, ok: true, rows: result.rows, rowCount: result.affectedRows || result.rows.length };
        }
        case 'exec':
          await db.exec(request.sql);
          await alone(() => statements.forgetAll());
          return { id: request.id, ok: true };
        case 'begin':
          return { id: request.id, ok: true, tx: await begin() };
        case 'commit':
        case 'rollback':
          await end(request.tx, request.kind === 'commit');
          return { id: request.id, ok: true };
        case 'close':
          for (const id of [...open.keys()]) await end(id, false);
          await db.close();
          return { id: request.id, ok: true };
      }
    };

    port.on('message', (request: PgliteRequest) => {
      handle(request).then(
        (reply) => {
          port.postMessage(reply);
          if (request.kind === 'close') port.close();
        },
        (error: unknown) => port.postMessage({ id: request.id, ok: false, error: serializeError(error) } satisfies PgliteReply),
      );
    });
    port.postMessage({ id: 0, ok: true, ready: true } satisfies PgliteReply);
  } catch (error) {
    port.postMessage({ id: 0, ok: false, error: serializeError(error) } satisfies PgliteReply);
  }
}

function serializeError(error: unknown): SerializedError {
  if (!(error instanceof Error)) return { message: String(error) };
  const fields: SerializedError = { message: error.message };
  for (const [key, value] of Object.entries(error)) {
    if (typeof value === 'string' || typeof value === 'number') fields[key] = value;
  }
  return fields;
}
