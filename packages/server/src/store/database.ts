/** What both drivers (PGlite in-process, `pg` against a server) offer the store: one SQL dialect. */
export interface Queryable {
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<Row>>;
}

export interface QueryResult<Row> {
  rows: Row[];
  /** Rows changed by INSERT/UPDATE/DELETE, or returned by SELECT. */
  rowCount: number;
}

export interface Database extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /** Runs `fn` in one transaction: committed when it resolves, rolled back when it throws. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Runs several statements at once (migrations). */
  exec(sql: string): Promise<void>;
  close(): Promise<void>;
}

/** The database did not answer (connection refused, dropped, timed out): the request changed nothing. */
export class DatabaseUnavailableError extends Error {
  override readonly name = 'DatabaseUnavailableError';
  constructor(cause: unknown) {
    super('the database is unavailable', { cause });
  }
}

/** SQLSTATE classes that mean the server, not the statement, failed: connection exceptions and shutdowns. */
export function isConnectionFailure(code: unknown): boolean {
  return typeof code === 'string' && /^(08|57P0[1-3])/.test(code);
}

/**
 * The store's reads and writes, which both drivers keep prepared (parsed and planned
 * once per connection); DDL and session control run unprepared.
 */
export function isPlannable(sql: string): boolean {
  return PLANNABLE.test(sql);
}
const PLANNABLE = /^\s*(?:SELECT|INSERT|UPDATE|DELETE|WITH)\b/i;
