import { type AuthServer, createAuthServer, MEMORY_DATA_DIR, type ServerOptions } from '@tessera/server';

/** A clock the test moves by hand: tokens expire because the test says so, never by sleeping. */
export class ManualClock {
  #now: number;
  constructor(start = Date.UTC(2030, 0, 1, 12, 0, 0)) {
    this.#now = start;
  }
  readonly now = (): number => this.#now;
  advance(seconds: number): void {
    this.#now += seconds * 1000;
  }
}

export interface TestServer {
  server: AuthServer;
  url: string;
  clock: ManualClock;
  close(): Promise<void>;
  /** `fetch` against the server, JSON in and out. */
  call(method: string, path: string, init?: { body?: unknown; token?: string; headers?: Record<string, string> }): Promise<{
    status: number;
    headers: Headers;
    body: any;
  }>;
}

/** A real auth server on a free port, with an in-memory PGlite and a manual clock unless told otherwise. */
export async function startTestServer(options: ServerOptions = {}): Promise<TestServer> {
  const clock = new ManualClock();
  const server = await createAuthServer({
    port: 0,
    dataDir: MEMORY_DATA_DIR,
    log: false,
    clock: clock.now,
    rateLimit: 'ip=100000/1m,user=100000/1m',
    ...options,
  });
  const url = await server.listen();
  return {
    server,
    url,
    clock,
    close: () => server.close(),
    async call(method, path, init = {}) {
      const headers: Record<string, string> = { ...init.headers };
      if (init.body !== undefined && headers['content-type'] === undefined) headers['content-type'] = 'application/json';
      if (init.token !== undefined) headers.authorization = `Bearer ${init.token}`;
      const response = await fetch(url + path, {
        method,
        headers,
        body: init.body === undefined ? undefined : typeof init.body === 'string' ? init.body : JSON.stringify(init.body),
      });
      const text = await response.text();
      let body: unknown = text;
      try {
        body = text ? JSON.parse(text) : undefined;
      } catch {}
      return { status: response.status, headers: response.headers, body };
    },
  };
}

let counter = 0;
/** A username no other test in the process uses. */
export function uniqueName(prefix = 'user'): string {
  counter += 1;
  return `${prefix}${process.pid}x${counter}`;
}

/** Registers and logs in a fresh user; returns the pair and credentials. */
export async function signUp(t: TestServer, password = 'correct horse battery') {
  const username = uniqueName();
  const reg = await t.call('POST', '/auth/register', { body: { username, password } });
  if (reg.status !== 201) throw new Error(`register failed: ${reg.status} ${JSON.stringify(reg.body)}`);
  const login = await t.call('POST', '/auth/login', { body: { username, password } });
  if (login.status !== 200) throw new Error(`login failed: ${login.status} ${JSON.stringify(login.body)}`);
  return { username, password, userId: reg.body.user.id as string, pair: login.body };
}
