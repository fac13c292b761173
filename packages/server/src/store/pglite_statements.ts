import { type PGlite, parse, protocol, type Results } from '@electric-sql/pglite';
import { isPlannable } from './database.js';

type BackendMessage = Awaited<ReturnType<PGlite['execProtocol']>>['messages'][number];

/**
 * The store's statements, parsed and planned once per database instead of once per call.
 *
 * `PGlite.query` sends each statement as six protocol messages, each its own trip into
 * WebAssembly (Parse, Describe, Bind, Describe, Execute, Sync), and PostgreSQL parses,
 * analyses and plans it every time. For the refresh statement (an `UPDATE … RETURNING`
 * with its audit `INSERT`, one CTE) that planning is most of the cost: measured in
 * the worker's terms, 1.1 ms as `query`, 0.25 ms as a named prepared statement run
 * with one message (Bind, Describe, Execute, Sync). This is what `pg` and every
 * PostgreSQL driver do with named statements, done against PGlite's wire protocol.
 *
 * Values are serialised and rows parsed exactly as `PGlite.query` does (by the
 * parameter types PostgreSQL reports, with PGlite's serializers and parsers), so
 * callers see the same rows. The caller holds PGlite's locks around each call.
 */
export class PreparedStatements {
  readonly #db: PGlite;
  readonly #capacity: number;
  /** SQL text → its statement, least recently used first (a Map keeps insertion order). */
  readonly #statements = new Map<string, Prepared>();
  /** Names are unique per instance, so two caches on one database (tests) never collide. */
  readonly #prefix = `tessera_${++instances}_`;
  #next = 1;

  /** @param capacity statements kept (each holds a plan in PGlite's memory); the least recently used is closed first */
  constructor(db: PGlite, capacity = 256) {
    this.#db = db;
    this.#capacity = capacity;
  }

  /** How many statements are prepared now. */
  get size(): number {
    return this.#statements.size;
  }

  /** Runs one statement with `params` ($1…), as `PGlite.query` would. */
  async query(sql: string, params: readonly unknown[]): Promise<Results> {
    if (!isPlannable(sql)) {
      const statement = await this.#describe('', sql, []);
      const result = await this.#execute(statement, params);
      // A schema change can change what a cached `SELECT *` returns: plan everything anew.
      if (!SESSION_CONTROL.test(sql)) await this.forgetAll();
      return result;
    }
    let statement = this.#statements.get(sql);
    if (statement) {
      this.#statements.delete(sql);
      this.#statements.set(sql, statement);
    } else {
      const evicted: Uint8Array[] = [];
      while (this.#statements.size >= this.#capacity) {
        const [oldest, old] = this.#statements.entries().next().value as [string, Prepared];
        this.#statements.delete(oldest);
        evicted.push(serialize.close({ type: 'S', name: old.name }));
      }
      statement = await this.#describe(`${this.#prefix}${this.#next++}`, sql, evicted);
      this.#statements.set(sql, statement);
    }
    try {
      return await this.#execute(statement, params);
    } catch (error) {
      // "cached plan must not change result type": the table changed under a `SELECT *`; prepare it again next time.
      if ((error as { code?: unknown }).code === '0A000') await this.#forget(sql);
      throw error;
    }
  }

  /** Closes every statement (after DDL run through `exec`). */
  async forgetAll(): Promise<void> {
    if (this.#statements.size === 0) return;
    this.#statements.clear();
    await this.#db.execProtocol(serialize.query('DEALLOCATE ALL'), { syncToFs: false });
  }

  async #forget(sql: string): Promise<void> {
    const statement = this.#statements.get(sql);
    if (!statement) return;
    this.#statements.delete(sql);
    await this.#db.execProtocol(concat([serialize.close({ type: 'S', name: statement.name }), serialize.sync()]), { syncToFs: false });
  }

  /**
   * Parse + Describe: the statement's parameter types and the columns it returns, in
   * one trip (after closing `evicted`).
   */
  async #describe(name: string, sql: string, evicted: Uint8Array[]): Promise<Prepared> {
    const { messages } = await this.#db.execProtocol(
      concat([...evicted, serialize.parse({ name, text: sql }), serialize.describe({ type: 'S', name }), serialize.sync()]),
      { syncToFs: false },
    );
    const columns = messages.find((message) => message.name === 'rowDescription');
    return { name, paramTypes: parse.parseDescribeStatementResults(messages), columns: columns ? [columns] : [] };
  }

  /**
   * Bind + Execute + Sync in one trip; an error leaves the protocol ready for the next
   * statement. The columns are the ones described at Parse (all in text, as Bind asks
   * for): a Describe per run would have PostgreSQL send, and PGlite decode, every
   * column's name again (a fifth of the worker's time on the refresh statement). When
   * a table changes under a `SELECT *`, PostgreSQL refuses the run (0A000) rather than
   * return other columns.
   */
  async #execute(statement: Prepared, params: readonly unknown[]): Promise<Results> {
    const values = params.map((value, i) => {
      if (value === null || value === undefined) return null;
      const serializer = this.#db.serializers[statement.paramTypes[i]!];
      return serializer ? serializer(value) : String(value);
    });
    const { messages } = await this.#db.execProtocol(
      concat([serialize.bind({ statement: statement.name, values }), serialize.execute({}), serialize.sync()]),
      { syncToFs: false },
    );
    return parse.parseResults([...statement.columns, ...messages], this.#db.parsers)[0] ?? { rows: [], fields: [], affectedRows: 0 };
  }
}

interface Prepared {
  /** '' for the unnamed statement (run once). */
  name: string;
  paramTypes: number[];
  /** The statement's RowDescription, or none when it returns no rows. */
  columns: BackendMessage[];
}

const { serialize } = protocol;
let instances = 0;

/** Statements that change no schema: running them keeps the prepared statements. */
const SESSION_CONTROL = /^\s*(?:BEGIN|START|COMMIT|END|ROLLBACK|SAVEPOINT|RELEASE|SET|RESET|SHOW|DEALLOCATE)\b/i;

function concat(parts: Uint8Array[]): Uint8Array {
  const buffer = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    buffer.set(part, offset);
    offset += part.length;
  }
  return buffer;
}
