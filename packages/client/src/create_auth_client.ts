import { type DpopSigner, dpopSigner, indexedDbKeyPair, memoryKeyPair } from './dpop.js';
import { type AddPasskeyOptions, addPasskey, type Passkey, type PasskeyCalls, type PasskeyLoginOptions, passkeyAssertion } from './passkeys.js';
import { TabChannel } from './tab_channel.js';

/** The error codes that mean "this access token will not do": refresh and retry. */
export const RETRYABLE_TOKEN_CODES = ['invalid_token', 'token_expired', 'token_revoked'] as const;
/** Why a session ended, as the `logout` event says it. */
export type LogoutReason = 'logout' | 'token_expired' | 'token_revoked' | 'token_reused' | 'invalid_token' | 'account_disabled' | 'other_tab';

/** Where the refresh token lives when it is not in the httpOnly cookie (Node, mobile, tests). */
export interface TokenStorage {
  get(): string | null | Promise<string | null>;
  set(refreshToken: string): void | Promise<void>;
  clear(): void | Promise<void>;
}

export interface AuthClientOptions {
  /** The auth server, e.g. `https://auth.example.com` (its `/auth/*` routes). */
  baseUrl: string;
  /**
   * The other origins `fetch` (and the axios adapter) may send the access token to,
   * e.g. `['https://api.example.com']`: scheme, host and port, compared exactly (no
   * path, no wildcard, no subdomains). `baseUrl`'s origin is always included. A
   * request to any other origin goes out as the caller made it, without the token,
   * and its 401 is returned as it is: no refresh, no retry, no logout.
   */
  apiOrigins?: readonly string[];
  /**
   * `'cookie'` (default in browsers): the refresh token stays in the server's
   * httpOnly cookie and the access token in memory only, out of reach of page
   * script. `'memory'` (default in Node) or a `TokenStorage`: the client holds the
   * refresh token itself.
   */
  storage?: 'cookie' | 'memory' | TokenStorage;
  /** Refresh this many seconds before the access token expires (plus up to 10 % jitter). Default 30. */
  refreshMargin?: number;
  /** Refresh proactively before expiry. Default true. */
  autoRefresh?: boolean;
  /** Coordinate refreshes and logouts across browser tabs (Web Locks + BroadcastChannel). Default true where available. */
  crossTab?: boolean;
  /** The `fetch` to use. Default `globalThis.fetch`. */
  fetch?: typeof globalThis.fetch;
  /**
   * Bind the session to a key this client holds (DPoP, RFC 9449): login sends a proof,
   * and every refresh and every request with the access token needs a fresh one by the
   * same key, so a copied refresh or access token is worthless on its own. `true` in
   * browsers by default: an ECDSA P-256 key generated with WebCrypto, non-extractable,
   * kept in IndexedDB (it survives reloads, and the tabs of one origin share it). In
   * Node, off by default; `true` makes a key in memory, or give `{ keyPair }` (its
   * private key should be non-extractable).
   */
  dpop?: boolean | { keyPair: CryptoKeyPair };
}

/** Who is signed in, from the access token's claims. */
export interface Session {
  userId: string;
  username: string;
  roles: string[];
  sessionId: string;
  /** Local time (ms) at which the access token expires, computed from `expires_in`, so device clock skew does not matter. */
  accessExpiresAt: number;
}

export interface AuthEvents {
  session: Session | null;
  refreshed: Session;
  logout: { reason: LogoutReason };
}

/** A failed auth call: `code` is the server's error code (or `network_error`). */
export class AuthClientError extends Error {
  override readonly name = 'AuthClientError';
  readonly code: string;
  readonly status: number;
  /** With `mfa_required`: the second factors the server takes (`totp`, `recovery_code`); finish with `completeMfa(code)`. */
  readonly methods: string[] | undefined;
  constructor(code: string, message: string, status: number, methods?: string[]) {
    super(message);
    this.code = code;
    this.status = status;
    this.methods = methods;
  }
}

export interface AuthClient {
  /**
   * Signs in. For an account with a second factor it rejects with an `AuthClientError`
   * whose `code` is `mfa_required` (and `methods`): ask for a code and call `completeMfa`.
   */
  login(username: string, password: string): Promise<Session>;
  /** Finishes the login that answered `mfa_required`, with a code from the authenticator app or a recovery code. */
  completeMfa(code: string): Promise<Session>;
  /**
   * Signs in with a passkey (WebAuthn): a whole login, no password and no second
   * factor. Loads `@simplewebauthn/browser` on first use. Rejects with an
   * `AuthClientError` from the server (`invalid_code`, `account_disabled`,
   * `rate_limited`), or with the browser's error (`NotAllowedError`: cancelled, or no
   * passkey for this site).
   *
   * @example
   * await auth.loginWithPasskey() // the browser offers this site's passkeys
   * await auth.loginWithPasskey({ username: 'alice' }) // only alice's
   */
  loginWithPasskey(options?: PasskeyLoginOptions): Promise<Session>;
  /**
   * Adds a passkey to the signed-in account (the browser asks the user to create one).
   *
   * @example
   * const passkey = await auth.registerPasskey({ name: 'Work laptop' })
   */
  registerPasskey(options?: AddPasskeyOptions): Promise<Passkey>;
  /** Creates the account and signs in. */
  register(username: string, password: string): Promise<Session>;
  /** Ends this session on the server and everywhere in this browser. */
  logout(): Promise<void>;
  /** Refreshes now; concurrent calls (and other tabs) share one refresh. Resolves to null when the session is over. */
  refresh(): Promise<Session | null>;
  /**
   * `fetch` with the access token attached, for `baseUrl`'s origin and `apiOrigins`
   * only; there, it refreshes once and retries once on a token 401. A request to
   * any other origin is sent untouched and never refreshes. A relative URL resolves
   * against the page (as the browser's `fetch` does); in Node, where there is no
   * page, it rejects with a `TypeError`: pass an absolute URL.
   */
  fetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response>;
  /** Whether `fetch` (and the axios adapter) would attach the access token to this absolute URL: its origin is `baseUrl`'s or in `apiOrigins`. */
  attachesTokenTo(url: string | URL): boolean;
  /** The current session; in cookie mode, restores it from the cookie on first call (e.g. after a reload). */
  getSession(): Promise<Session | null>;
  /** The current access token, for libraries that attach it themselves (the axios adapter). */
  getAccessToken(): string | null;
  on<E extends keyof AuthEvents>(event: E, listener: (value: AuthEvents[E]) => void): () => void;
  /** Stops timers and cross-tab listeners. */
  close(): void;
}

interface TokenResponse {
  access_token: string;
  refresh_token?: string;
  expires_in: number;
  session_id: string;
}

/**
 * Creates the client.
 *
 * @example
 * const auth = createAuthClient({ baseUrl: 'https://auth.example.com', apiOrigins: ['https://api.example.com'] })
 * auth.on('logout', ({ reason }) => showLogin(reason))
 * await auth.login('alice', password)
 * const res = await auth.fetch('https://api.example.com/api/profile')
 */
export function createAuthClient(options: AuthClientOptions): AuthClient {
  if (typeof options?.baseUrl !== 'string' || !/^https?:\/\//.test(options.baseUrl)) {
    throw new TypeError('createAuthClient: baseUrl must be an absolute http(s) URL');
  }
  const base = options.baseUrl.replace(/\/+$/, '');
  if (options.apiOrigins !== undefined && !Array.isArray(options.apiOrigins)) {
    throw new TypeError('createAuthClient: apiOrigins must be an array of origins, e.g. ["https://api.example.com"]');
  }
  /** The only origins that ever see the access token (or whose 401 may cause a refresh). */
  const trusted = new Set([new URL(base).origin, ...(options.apiOrigins ?? []).map(parseOrigin)]);
  const attachesTokenTo = (url: string | URL): boolean => {
    const parsed = parseUrl(url);
    return parsed !== undefined && (parsed.protocol === 'https:' || parsed.protocol === 'http:') && trusted.has(parsed.origin);
  };
  const http = options.fetch ?? globalThis.fetch.bind(globalThis);
  const inBrowser = typeof document !== 'undefined';
  const storageOption = options.storage ?? (inBrowser ? 'cookie' : 'memory');
  const cookieMode = storageOption === 'cookie';
  const storage: TokenStorage | undefined = cookieMode ? undefined : storageOption === 'memory' ? memoryStorage() : storageOption;
  const margin = (options.refreshMargin ?? 30) * 1000;
  const listeners = new Map<keyof AuthEvents, Set<(value: never) => void>>();
  const tabs = options.crossTab === false ? undefined : TabChannel.open(`tessera:${base}`);
  const dpop = resolveDpop(options.dpop, base, inBrowser);
  /** The server's clock minus ours (ms), from its `Date` header: proofs carry the server's time. */
  let clockOffset = 0;
  /** The latest `DPoP-Nonce` of each origin (RFC 9449 §8). */
  const nonces = new Map<string, string>();

  let accessToken: string | null = null;
  let session: Session | null = null;
  let inflight: Promise<Session | null> | undefined;
  let restored: Promise<Session | null> | undefined;
  let timer: ReturnType<typeof setTimeout> | undefined;
  let closed = false;

  function emit<E extends keyof AuthEvents>(event: E, value: AuthEvents[E]): void {
    for (const listener of listeners.get(event) ?? []) (listener as (value: AuthEvents[E]) => void)(value);
  }

  function adopt(token: string, expiresIn: number, receivedAt: number): Session {
    const claims = decodeClaims(token);
    accessToken = token;
    session = {
      userId: String(claims.sub ?? ''),
      username: String(claims.username ?? ''),
      roles: Array.isArray(claims.roles) ? claims.roles.map(String) : [],
      sessionId: String(claims.sid ?? ''),
      accessExpiresAt: receivedAt + expiresIn * 1000,
    };
    schedule();
    return session;
  }

  function schedule(): void {
    if (timer) clearTimeout(timer);
    if (closed || options.autoRefresh === false || !session) return;
    const ttl = session.accessExpiresAt - Date.now();
    // Shortly before expiry, with jitter so many tabs and clients do not refresh in step.
    const lead = Math.min(margin, ttl / 2) * (1 + Math.random() * 0.1);
    timer = setTimeout(() => void refresh().catch(() => {}), Math.max(0, ttl - lead));
    (timer as { unref?: () => void }).unref?.();
  }

  async function end(reason: LogoutReason, tellTabs: boolean): Promise<void> {
    const had = session !== null || accessToken !== null;
    accessToken = null;
    session = null;
    restored = undefined;
    if (timer) clearTimeout(timer);
    await storage?.clear();
    if (tellTabs) tabs?.post({ type: 'logout' });
    // Only a session that existed can end: a restore that finds no cookie is silent.
    if (had) {
      emit('session', null);
      emit('logout', { reason });
    }
  }

  tabs?.listen((message) => {
    if (message.type === 'logout') void end('other_tab', false);
    if (message.type === 'refreshed' && typeof message.accessToken === 'string' && typeof message.expiresIn === 'number') {
      emit('refreshed', adopt(message.accessToken, message.expiresIn, Date.now()));
      emit('session', session);
    }
  });

  /**
   * A request to the auth server. With `proof`, a DPoP proof goes along (and the bound
   * access token as `DPoP`); a proof refused for a reason a retry can fix (a new server
   * nonce, or our clock found off) is made again, once.
   */
  async function call(path: string, init: RequestInit & { json?: unknown; bearer?: string; proof?: boolean } = {}): Promise<Response> {
    const url = `${base}${path}`;
    const withProof = dpop !== undefined && init.proof === true;
    // Only a bound access token goes as `DPoP` (with its hash in the proof); a refresh token is always `Bearer`.
    const boundAccess = withProof && init.bearer !== undefined && init.bearer === accessToken && isBound(init.bearer) ? init.bearer : undefined;
    const send = async () => {
      const headers = new Headers(init.headers);
      if (init.json !== undefined) headers.set('content-type', 'application/json');
      if (init.bearer) headers.set('authorization', `${boundAccess ? 'DPoP' : 'Bearer'} ${init.bearer}`);
      if (withProof) headers.set('dpop', await proofFor(init.method ?? 'GET', url, boundAccess));
      return http(url, { ...init, headers, body: init.json === undefined ? init.body : JSON.stringify(init.json), credentials: 'include' });
    };
    const offsetBefore = clockOffset;
    const first = await send();
    observe(first, url);
    if (!withProof || !(await proofRetryHelps(first, url, offsetBefore))) return first;
    const second = await send();
    observe(second, url);
    return second;
  }

  /** Whether a token is bound to a key (its `cnf.jkt`). */
  function isBound(token: string): boolean {
    const cnf = decodeClaims(token).cnf as { jkt?: unknown } | undefined;
    return typeof cnf?.jkt === 'string';
  }

  function proofFor(method: string, url: string, boundAccessToken?: string): Promise<string> {
    const nonce = nonces.get(new URL(url).origin);
    return dpop!.proof({ method, url, now: Date.now() + clockOffset, ...(boundAccessToken ? { accessToken: boundAccessToken } : {}), ...(nonce ? { nonce } : {}) });
  }

  /** Learns from a response of a trusted origin: its `DPoP-Nonce`, and (the auth server's) clock. */
  function observe(response: Response, url: string): void {
    const origin = new URL(url).origin;
    const nonce = response.headers.get('dpop-nonce');
    if (nonce) nonces.set(origin, nonce);
    if (origin !== new URL(base).origin) return;
    const date = Date.parse(response.headers.get('date') ?? '');
    // Whole seconds only: keep the offset unless it is off by more than the header's precision.
    if (Number.isFinite(date) && Math.abs(date - (Date.now() + clockOffset)) > 2000) clockOffset = date - Date.now();
  }

  /**
   * A refused proof that a second one will fix: the server asked for its nonce
   * (`use_dpop_nonce`), or our clock turned out to be off (the proof's `iat`).
   */
  async function proofRetryHelps(response: Response, url: string, offsetBefore: number): Promise<boolean> {
    if (response.status !== 401 && response.status !== 400) return false;
    const challenge = response.headers.get('www-authenticate') ?? '';
    const code = (await errorCode(response)) ?? /error="([a-z_]+)"/.exec(challenge)?.[1];
    if (code === 'use_dpop_nonce' || /use_dpop_nonce/.test(challenge)) return nonces.has(new URL(url).origin);
    return code === 'invalid_dpop_proof' && Math.abs(clockOffset - offsetBefore) > 5000;
  }

  async function tokens(response: Response, receivedAt: number): Promise<Session> {
    const body = (await response.json()) as TokenResponse;
    if (!cookieMode && body.refresh_token) await storage!.set(body.refresh_token);
    return adopt(body.access_token, body.expires_in, receivedAt);
  }

  /** One refresh for this tab (the promise) and for all tabs (the lock). */
  async function doRefresh(): Promise<Session | null> {
    const tokenBefore = accessToken;
    const run = async (): Promise<Session | null> => {
      // Another tab may have refreshed while we waited for the lock: use its token.
      if (accessToken && accessToken !== tokenBefore && session && session.accessExpiresAt - Date.now() > margin) return session;
      const refreshToken = cookieMode ? undefined : await storage!.get();
      if (!cookieMode && !refreshToken) return null;
      const receivedAt = Date.now();
      let response: Response;
      try {
        response = await call('/auth/refresh', { method: 'POST', proof: true, ...(refreshToken ? { bearer: refreshToken } : {}) });
      } catch (error) {
        // The network, not the session, failed: keep the user signed in and let the caller retry.
        throw new AuthClientError('network_error', (error as Error).message, 0);
      }
      if (response.ok) {
        const next = await tokens(response, receivedAt);
        tabs?.post({ type: 'refreshed', accessToken: accessToken!, expiresIn: (next.accessExpiresAt - receivedAt) / 1000 });
        emit('refreshed', next);
        emit('session', next);
        return next;
      }
      const code = await errorCode(response);
      if (response.status === 401 || response.status === 403) {
        await end((code as LogoutReason) ?? 'invalid_token', true);
        return null;
      }
      throw new AuthClientError(code ?? 'unavailable', `refresh failed with ${response.status}`, response.status);
    };
    return tabs ? tabs.withLock('tessera-refresh', run) : run();
  }

  function refresh(): Promise<Session | null> {
    inflight ??= doRefresh().finally(() => {
      inflight = undefined;
    });
    return inflight;
  }

  async function authFetch(input: RequestInfo | URL, init?: RequestInit): Promise<Response> {
    const original = toRequest(input, init);
    // Another origin: sent exactly as the caller made it (their own Authorization, if
    // any, is theirs to send), never with our token, and whatever it answers, a 401
    // included, is the caller's: no session restore, no refresh, no retry, no logout.
    if (!attachesTokenTo(original.url)) return http(original);
    // Redirects: `fetch` follows them (redirect: 'follow', unless the caller chose
    // otherwise), and the Fetch Standard removes a request's Authorization header on
    // every cross-origin hop (whatwg/fetch#1544; Firefox 111+, Chromium, and undici
    // in Node 20, which client.test.ts checks). So a trusted origin that redirects
    // elsewhere cannot hand our token on, even to another trusted origin. Its 401 is
    // then not about our token (it never saw it): we only refresh on a 401 from the
    // origin the token was sent to (see `landed` below).
    if (!accessToken && cookieMode && !restored) await getSession();
    const send = async (token: string | null) => {
      const request = original.clone();
      if (token && dpop && isBound(token)) {
        request.headers.set('authorization', `DPoP ${token}`);
        request.headers.set('dpop', await proofFor(request.method, request.url, token));
      } else if (token) {
        request.headers.set('authorization', `Bearer ${token}`);
      }
      const response = await http(request);
      observe(response, request.url);
      return response;
    };
    const usedToken = accessToken;
    const offsetBefore = clockOffset;
    let first = await send(usedToken);
    // A proof the server wants again with its nonce (or the current time): once.
    if (usedToken && dpop && isBound(usedToken) && (await proofRetryHelps(first, original.url, offsetBefore))) first = await send(usedToken);
    if (first.status !== 401) return first;
    // `url` is where the response came from after redirects ('' from some fetch stand-ins).
    const landed = first.url || original.url;
    if (parseUrl(landed)?.origin !== parseUrl(original.url)?.origin || !(await isTokenFailure(first))) return first;
    // Someone refreshed meanwhile: just retry with the new token. Else refresh once.
    let token = accessToken !== usedToken ? accessToken : null;
    if (!token) {
      try {
        token = (await refresh()) ? accessToken : null;
      } catch {
        return first; // a network error while refreshing: not a logout
      }
    }
    if (!token) return first;
    // Retry exactly once: a second 401 goes back to the caller, never another refresh.
    return send(token);
  }

  async function getSession(): Promise<Session | null> {
    if (session) return session;
    restored ??= refresh().catch(() => null);
    return restored;
  }

  /** The login step waiting for a second factor (kept here, never handed to the app). */
  let pendingMfaToken: string | undefined;

  async function signIn(username: string, password: string): Promise<Session> {
    pendingMfaToken = undefined;
    return finishLogin(await call('/auth/login', { method: 'POST', proof: true, json: { username, password, ...(cookieMode ? { use_cookie: true } : {}) } }), Date.now());
  }

  async function completeMfa(code: string): Promise<Session> {
    const mfaToken = pendingMfaToken;
    if (!mfaToken) throw new AuthClientError('invalid_request', 'No sign-in is waiting for a code: call login first.', 400);
    const response = await call('/auth/login/mfa', { method: 'POST', proof: true, json: { mfa_token: mfaToken, code, ...(cookieMode ? { use_cookie: true } : {}) } });
    // A wrong code leaves the step open for another try; a dead step (invalid_token) does not.
    if (response.ok || (await errorCode(response)) !== 'invalid_code') pendingMfaToken = undefined;
    return finishLogin(response, Date.now());
  }

  async function finishLogin(response: Response, receivedAt: number): Promise<Session> {
    if (!response.ok) {
      const body = (await response
        .clone()
        .json()
        .catch(() => ({}))) as { error?: unknown; mfa_token?: unknown };
      if (body.error === 'mfa_required' && typeof body.mfa_token === 'string') pendingMfaToken = body.mfa_token;
      throw await failure(response);
    }
    const next = await tokens(response, receivedAt);
    restored = Promise.resolve(next);
    emit('session', next);
    return next;
  }

  async function loginWithPasskey(options?: PasskeyLoginOptions): Promise<Session> {
    pendingMfaToken = undefined;
    const response = await passkeyAssertion({ post: (path, json) => call(path, { method: 'POST', json }), failure }, options);
    return finishLogin(await call('/auth/passkeys/login', { method: 'POST', proof: true, json: { response, ...(cookieMode ? { use_cookie: true } : {}) } }), Date.now());
  }

  /** With the access token, refreshed once if need be, as `fetch` sends it. */
  const signedIn: PasskeyCalls = {
    post: (path, json) =>
      authFetch(`${base}${path}`, { method: 'POST', ...(json === undefined ? {} : { headers: { 'content-type': 'application/json' }, body: JSON.stringify(json) }) }),
    failure,
  };

  return {
    login: signIn,
    completeMfa,
    loginWithPasskey,
    registerPasskey: (options) => addPasskey(signedIn, options),
    async register(username, password) {
      const response = await call('/auth/register', { method: 'POST', json: { username, password } });
      if (!response.ok) throw await failure(response);
      return signIn(username, password);
    },
    async logout() {
      const refreshToken = cookieMode ? undefined : await storage!.get();
      const bearer = accessToken ?? refreshToken ?? undefined;
      try {
        await call('/auth/logout', { method: 'POST', proof: true, ...(bearer ? { bearer } : {}) });
      } finally {
        restored = undefined;
        await end('logout', true);
      }
    },
    refresh,
    fetch: authFetch,
    attachesTokenTo,
    getSession,
    getAccessToken: () => accessToken,
    on(event, listener) {
      const set = listeners.get(event) ?? new Set();
      listeners.set(event, set);
      set.add(listener as (value: never) => void);
      return () => void set.delete(listener as (value: never) => void);
    },
    close() {
      closed = true;
      if (timer) clearTimeout(timer);
      tabs?.close();
    },
  };
}

/**
 * An `apiOrigins` entry as an origin (`new URL(x).origin`), or a TypeError naming it:
 * an absolute http(s) URL with nothing after the host and port but an optional `/`.
 */
function parseOrigin(entry: unknown): string {
  const bad = (why: string) => new TypeError(`createAuthClient: apiOrigins entry ${JSON.stringify(entry)} ${why}`);
  if (typeof entry !== 'string') throw bad('is not a string');
  if (entry.includes('*')) throw bad('has a wildcard: list each origin exactly, e.g. "https://api.example.com"');
  const url = parseUrl(entry);
  if (!url) throw bad('is not an absolute URL such as "https://api.example.com"');
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw bad('is not http(s)');
  if (url.username || url.password || entry.includes('@')) throw bad('has credentials: an origin is scheme://host[:port]');
  if (url.pathname !== '/' || /[?#]/.test(entry)) throw bad('has a path, query or fragment: an origin is scheme://host[:port]');
  return url.origin;
}

function parseUrl(url: string | URL): URL | undefined {
  try {
    return new URL(url);
  } catch {
    return undefined;
  }
}

/**
 * `fetch`'s arguments as a Request. Relative URLs resolve as `fetch` resolves them:
 * against the page (document base URL, i.e. `location.href`) in a browser or worker;
 * in Node there is no page, so they are refused with a clear message rather than
 * guessed (they are not taken as relative to `baseUrl`).
 */
function toRequest(input: RequestInfo | URL, init: RequestInit | undefined): Request {
  try {
    return new Request(input, init);
  } catch (error) {
    if (typeof input === 'string' && typeof location === 'undefined' && !parseUrl(input)) {
      throw new TypeError(`auth.fetch: "${input}" is a relative URL and there is no page to resolve it against (Node); pass an absolute URL`);
    }
    throw error;
  }
}

/** Whether a 401 is about the token (refresh may help) rather than, say, a wrong password. */
async function isTokenFailure(response: Response): Promise<boolean> {
  if (/error="invalid_token"/.test(response.headers.get('www-authenticate') ?? '')) return true;
  const code = await errorCode(response.clone());
  return code !== undefined && (RETRYABLE_TOKEN_CODES as readonly string[]).includes(code);
}

async function errorCode(response: Response): Promise<string | undefined> {
  try {
    const body = (await response.clone().json()) as { error?: unknown };
    return typeof body.error === 'string' ? body.error : undefined;
  } catch {
    return undefined;
  }
}

async function failure(response: Response): Promise<AuthClientError> {
  try {
    const body = (await response.json()) as { error?: string; message?: string; methods?: unknown };
    const methods = Array.isArray(body.methods) ? body.methods.filter((m): m is string => typeof m === 'string') : undefined;
    return new AuthClientError(body.error ?? 'internal_error', body.message ?? `HTTP ${response.status}`, response.status, methods);
  } catch {
    return new AuthClientError('internal_error', `HTTP ${response.status}`, response.status);
  }
}

/** The claims of a JWT, unverified: the client only reads its own token's names, never trusts them. */
function decodeClaims(token: string): Record<string, unknown> {
  try {
    const payload = token.split('.')[1] ?? '';
    const bytes = Uint8Array.from(atob(payload.replace(/-/g, '+').replace(/_/g, '/')), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
  } catch {
    return {};
  }
}

function memoryStorage(): TokenStorage {
  let value: string | null = null;
  return {
    get: () => value,
    set: (token) => {
      value = token;
    },
    clear: () => {
      value = null;
    },
  };
}

/**
 * The client's DPoP signer: on by default where a page can keep a key (a browser with
 * IndexedDB and WebCrypto), off in Node unless asked.
 */
function resolveDpop(option: AuthClientOptions['dpop'], base: string, inBrowser: boolean): DpopSigner | undefined {
  const canKeep = inBrowser && typeof indexedDB !== 'undefined' && typeof crypto !== 'undefined' && crypto.subtle !== undefined;
  const wanted = option ?? canKeep;
  if (wanted === false) return undefined;
  if (typeof wanted === 'object') {
    if (!wanted.keyPair?.privateKey || !wanted.keyPair.publicKey) throw new TypeError('createAuthClient: dpop.keyPair must be a CryptoKeyPair (ECDSA P-256)');
    const pair = wanted.keyPair;
    return dpopSigner(async () => pair);
  }
  if (typeof crypto === 'undefined' || crypto.subtle === undefined) throw new TypeError('createAuthClient: dpop needs WebCrypto (crypto.subtle)');
  return dpopSigner(canKeep ? indexedDbKeyPair(base) : memoryKeyPair);
}
