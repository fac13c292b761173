import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, rmdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';
import { type Database, DatabaseUnavailableError, type Queryable, type QueryResult } from './database.js';
import { POSTGRESQL_CONF } from './pglite_template.js';
import type { PgliteAnswer, PgliteReply, PgliteRequest, PgliteWorkerData, SerializedError } from './pglite_worker.js';

/**
 * The embedded database: PostgreSQL compiled to WebAssembly, in a worker thread of
 * this process, so that its CPU time (about half of a refresh's) is not spent on
 * the server's event loop. PGlite serves one connection, so statements and
 * transactions run one at a time; that serial order is what makes its
 * transactions as safe as row locks on a real server.
 *
 * @param dataDir a directory for the database files, or `undefined` for memory only
 */
export async function openPgliteDatabase(dataDir: string | undefined): Promise<Database> {
  let fromTemplate = false;
  if (dataDir !== undefined) {
    // PGlite writes files (WAL segments, relation files) for as long as it runs, and the
    // WAL holds private signing keys: every file this process creates is for its user alone.
    // (The mask is the process's, so the worker's files follow it.)
    process.umask(0o077);
    fromTemplate = await createDataDir(dataDir);
  }
  const thread = await PgliteThread.start(dataDir);
  if (fromTemplate) {
    // The template's one value that must differ between databases: the revocation
    // feed's epoch, which tells a verifier that a cursor belongs to another database.
    await thread.query(undefined, "UPDATE revocation_counter SET epoch = substr(replace(gen_random_uuid()::text, '-', ''), 1, 12)", []);
  }
  const root: Queryable = { query: (sql, params = []) => thread.query(undefined, sql, params) };
  return {
    kind: 'pglite',
    query: root.query,
    async transaction(fn) {
      const tx = await thread.begin();
      let result: Awaited<ReturnType<typeof fn>>;
      try {
        result = await fn({ query: (sql, params = []) => thread.query(tx, sql, params) });
      } catch (error) {
        await thread.end(tx, 'rollback').catch(() => {});
        throw error;
      }
      await thread.end(tx, 'commit');
      return result;
    },
    exec: (sql) => thread.exec(sql),
    close: () => thread.close(),
  };
}

/** The worker thread that owns PGlite, and the requests waiting for its answers. */
class PgliteThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, { resolve: (reply: PgliteAnswer) => void; reject: (error: unknown) => void }>();
  #nextId = 1;
  #failure: unknown;

  private constructor(worker: Worker) {
    this.#worker = worker;
    // Idle, the thread must not keep the process alive; while a request waits, it must.
    worker.unref();
    worker.on('message', (reply: PgliteReply) => {
      const waiting = this.#pending.get(reply.id);
      if (!waiting) return;
      this.#pending.delete(reply.id);
      if (this.#pending.size === 0) worker.unref();
      if (reply.ok) waiting.resolve(reply);
      else waiting.reject(databaseError(reply.error));
    });
    const fail = (error: unknown) => {
      this.#failure ??= new DatabaseUnavailableError(error);
      for (const waiting of this.#pending.values()) waiting.reject(this.#failure);
      this.#pending.clear();
    };
    worker.on('error', fail);
    worker.on('exit', (code) => fail(new Error(`the database thread exited (${code})`)));
  }

  static async start(dataDir: string | undefined): Promise<PgliteThread> {
    const workerData: PgliteWorkerData = { dataDir };
    // The thread's own JavaScript allocates little that lives (PGlite's memory is
    // WebAssembly's), but loading PGlite grows its young generation to V8's maximum,
    // which an idle server then keeps for half a minute: 2 MB holds the whole
    // working set (idle RSS 186-194 MB instead of 193-200, refresh req/s unchanged).
    const resourceLimits = { maxYoungGenerationSizeMb: 2 };
    let worker: Worker;
    if (import.meta.url.endsWith('.ts')) {
      // Run from source (tests, benchmarks under tsx): Node 20 does not hand tsx's
      // loader to worker threads, so the worker registers it before its entry.
      const tsx = import.meta.resolve('tsx/esm/api');
      const entry = new URL('./pglite_worker.ts', import.meta.url).href;
      const boot = `(async () => { const { register } = await import(${JSON.stringify(tsx)}); register(); await import(${JSON.stringify(entry)}); })();`;
      worker = new Worker(boot, { eval: true, workerData, resourceLimits });
    } else {
      worker = new Worker(new URL('./pglite_worker.js', import.meta.url), { workerData, resourceLimits });
    }
    const thread = new PgliteThread(worker);
    await thread.#request(0, () => {});
    return thread;
  }

  async query<Row>(tx: number | undefined, sql: string, params: unknown[]): Promise<QueryResult<Row>> {
    const reply = await this.#send({ kind: 'query', sql, params, ...(tx === undefined ? {} : { tx }) });
    return { rows: (reply.rows ?? []) as Row[], rowCount: reply.rowCount ?? 0 };
  }

  async begin(): Promise<number> {
    return (await this.#send({ kind: 'begin' })).tx!;
  }

  async end(tx: number, kind: 'commit' | 'rollback'): Promise<void> {
    await this.#send({ kind, tx });
  }

  async exec(sql: string): Promise<void> {
    await this.#send({ kind: 'exec', sql });
  }

  async close(): Promise<void> {
    if (this.#failure) return;
    await this.#send({ kind: 'close' });
    this.#failure = new DatabaseUnavailableError(new Error('the database is closed'));
  }

  #send(request: DistributiveOmit<PgliteRequest, 'id'>): Promise<PgliteAnswer> {
    const id = this.#nextId++;
    return this.#request(id, () => this.#worker.postMessage({ ...request, id }));
  }

  #request(id: number, post: () => void): Promise<PgliteAnswer> {
    if (this.#failure) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#worker.ref();
      post();
    });
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A statement's error as the store expects it: an Error with PostgreSQL's fields (code, constraint, detail…). */
function databaseError(fields: SerializedError): Error {
  return Object.assign(new Error(fields.message), fields);
}

/**
 * A new database comes from the migrated template `npm run build` made, unpacked in a
 * fraction of a second (true). Without one (another PGlite release), initdb runs.
 */
async function createDataDir(dataDir: string): Promise<boolean> {
  if (existsSync(join(dataDir, 'PG_VERSION'))) return false;
  await mkdir(dirname(dataDir), { recursive: true, mode: 0o700 });
  // An empty directory (made by hand, or left by an interrupted initdb that never wrote a file) is taken over.
  if (existsSync(dataDir) && (await readdir(dataDir)).length === 0) await rmdir(dataDir);
  if (!existsSync(dataDir) && (await unpackOutOfProcess(dataDir))) return true;
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  await initializeOutOfProcess(dataDir);
  return false;
}

/**
 * Unpacking the template leaves about 55 MB of allocator memory that the process
 * never gives back: it is done by a short-lived child process (about 0.2 s).
 */
async function unpackOutOfProcess(dataDir: string): Promise<boolean> {
  const fromSource = import.meta.url.endsWith('.ts');
  const template = new URL(fromSource ? './pglite_template.ts' : './pglite_template.js', import.meta.url).href;
  const script = `process.umask(0o077);
const { unpackPgliteTemplate } = await import(${JSON.stringify(template)});
process.stdout.write(String(await unpackPgliteTemplate(${JSON.stringify(dataDir)})));`;
  // From source, the child needs this process's loader (tsx) and conditions.
  const loader = fromSource ? process.execArgv : [];
  const { stdout } = await promisify(execFile)(process.execPath, [...loader, '--input-type=module', '-e', script], { timeout: 120_000 });
  return stdout === 'true';
}

/**
 * Creating a database (initdb) takes PGlite about 600 MB that the process never
 * gives back. Do it once in a short-lived child process, so the server that then
 * opens the ready database stays small. Its files are for this user alone.
 */
async function initializeOutOfProcess(dataDir: string): Promise<void> {
  const pglite = import.meta.resolve('@electric-sql/pglite');
  const script = `process.umask(0o077);
const { PGlite } = await import(${JSON.stringify(pglite)});
const db = await PGlite.create(${JSON.stringify(dataDir)}, { postgresqlconf: ${JSON.stringify(POSTGRESQL_CONF)} });
await db.close();`;
  await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], { timeout: 120_000 });
}
