import type { AuthClient } from './create_auth_client.js';
import { RETRYABLE_TOKEN_CODES } from './create_auth_client.js';

/**
 * The parts of an axios instance this needs (no dependency on axios itself). `C` is
 * the instance's own request-config type, so an `AxiosInstance` fits as it is.
 */
interface AxiosLike<C> {
  interceptors: {
    request: { use(onFulfilled: (config: C) => C | Promise<C>): number; eject(id: number): void };
    // biome-ignore lint/suspicious/noExplicitAny: axios types the rejection handler's argument as any
    response: { use(onFulfilled: (response: any) => any, onRejected: (error: any) => any): number; eject(id: number): void };
  };
  request(config: NoInfer<C>): Promise<unknown>;
}
interface AxiosConfig {
  headers?: Record<string, unknown> & { set?: (name: string, value: string) => void };
  _tesseraRetried?: boolean;
  [key: string]: unknown;
}
interface AxiosErrorLike {
  config?: AxiosConfig;
  response?: { status: number; headers?: Record<string, unknown>; data?: unknown };
  /** XMLHttpRequest in browsers (`responseURL`), the last http.ClientRequest in Node (`res.responseUrl`). */
  request?: { responseURL?: unknown; res?: { responseUrl?: unknown } };
}
/** What axios's Node adapter (follow-redirects) hands a `beforeRedirect` hook: the next hop's options. */
type RedirectHook = (options: { href?: string; headers?: Record<string, unknown> }, ...rest: unknown[]) => void;

/**
 * Puts an axios instance under a Tessera client, as the design notes' axios
 * interceptors do but with the same guarantees as `client.fetch`: the access
 * token attached, one refresh however many requests fail at once, each retried
 * once, never a loop. Returns a function that removes the interceptors.
 *
 * The same origins rule as `client.fetch`: the token goes only to a request whose
 * URL, as axios resolves it (`url` against `baseURL`, as `allowAbsoluteUrls` says),
 * has `baseUrl`'s origin or one of `apiOrigins`. Any other request is left as the
 * caller made it, and its 401 is rejected to the caller with no refresh.
 *
 * @example
 * const api = axios.create({ baseURL: 'https://api.example.com' })
 * withAuth(api, auth)
 * const { data } = await api.get('/api/profile')
 */
export function withAuth<C extends object>(instance: AxiosLike<C>, client: AuthClient): () => void {
  const requestId = instance.interceptors.request.use(async (config) => {
    const url = requestUrl(config as AxiosConfig);
    // Another origin (or no URL we can place): untouched, and no session restore.
    if (url === undefined || !client.attachesTokenTo(url)) return config;
    if (!client.getAccessToken()) await client.getSession();
    const token = client.getAccessToken();
    if (token) {
      setHeader(config as AxiosConfig, 'Authorization', `Bearer ${token}`);
      guardRedirects(config as AxiosConfig, new URL(url).origin);
    }
    return config;
  });
  const responseId = instance.interceptors.response.use(
    (response) => response,
    async (error: AxiosErrorLike) => {
      const config = error.config;
      if (!config || config._tesseraRetried || !error.response || error.response.status !== 401) throw error;
      const url = requestUrl(config);
      // A 401 from another origin is the caller's business, never a reason to refresh;
      // nor is one from wherever a redirect led (our token was not sent there).
      if (url === undefined || !client.attachesTokenTo(url)) throw error;
      const landed = finalUrl(error);
      if (landed !== undefined && origin(landed) !== origin(url)) throw error;
      if (!isTokenFailure(error.response)) throw error;
      const sentWith = String(getHeader(config, 'Authorization') ?? '');
      const current = client.getAccessToken();
      // A refresh by another request may already have happened; otherwise refresh once (shared).
      const fresh = current && `Bearer ${current}` !== sentWith ? current : (await client.refresh().catch(() => null)) ? client.getAccessToken() : null;
      if (!fresh) throw error;
      config._tesseraRetried = true;
      setHeader(config, 'Authorization', `Bearer ${fresh}`);
      return instance.request(config as C);
    },
  );
  return () => {
    instance.interceptors.request.eject(requestId);
    instance.interceptors.response.eject(responseId);
  };
}

/**
 * The absolute URL axios will request, resolved as axios 1.x does (buildFullPath:
 * `url` joined to `baseURL` unless `url` is absolute, `scheme://` or `//`, and
 * `allowAbsoluteUrls` is not false), then against the page in a browser. In Node a
 * relative result has no origin (axios itself refuses it): undefined, so no token.
 * A Unix-socket request (`socketPath`) names no origin either.
 */
function requestUrl(config: AxiosConfig): string | undefined {
  if (config.socketPath) return undefined;
  const url = config.url === undefined || config.url === null ? undefined : String(config.url);
  const baseURL = typeof config.baseURL === 'string' && config.baseURL !== '' ? config.baseURL : undefined;
  const absolute = url !== undefined && /^([a-z][a-z\d+\-.]*:)?\/\//i.test(url);
  const full = baseURL !== undefined && (!absolute || config.allowAbsoluteUrls === false) ? joinUrl(baseURL, url) : url;
  if (full === undefined) return undefined;
  const page = typeof document !== 'undefined' ? document.baseURI : typeof location !== 'undefined' ? location.href : undefined;
  try {
    return new URL(full, page).href;
  } catch {
    return undefined;
  }
}

/** axios's combineURLs. */
function joinUrl(baseURL: string, relative: string | undefined): string {
  return relative ? `${baseURL.replace(/\/+$/, '')}/${relative.replace(/^\/+/, '')}` : baseURL;
}

function origin(url: string): string | undefined {
  try {
    return new URL(url).origin;
  } catch {
    return undefined;
  }
}

/** Where the response came from after redirects, when the adapter says. */
function finalUrl(error: AxiosErrorLike): string | undefined {
  const url = error.request?.responseURL || error.request?.res?.responseUrl;
  return typeof url === 'string' && url !== '' ? url : undefined;
}

const callerHooks = new WeakMap<RedirectHook, RedirectHook | undefined>();

/**
 * Redirects. In browsers axios uses XMLHttpRequest or fetch, which drop an
 * Authorization header on any cross-origin redirect (the Fetch Standard). In Node,
 * axios's http adapter follows redirects with follow-redirects; axios 1.x strips
 * Authorization on a cross-origin hop, but older follow-redirects kept it for a
 * subdomain. So, for a request that carries our token, a `beforeRedirect` hook
 * (chained before the caller's own) drops it on any hop off the request's origin.
 */
function guardRedirects(config: AxiosConfig, from: string | undefined): void {
  const current = typeof config.beforeRedirect === 'function' ? (config.beforeRedirect as RedirectHook) : undefined;
  const caller = current && callerHooks.has(current) ? callerHooks.get(current) : current;
  const hook: RedirectHook = (options, ...rest) => {
    if (options.href === undefined || origin(options.href) !== from) {
      for (const name of Object.keys(options.headers ?? {})) if (name.toLowerCase() === 'authorization') delete options.headers![name];
    }
    caller?.(options, ...rest);
  };
  callerHooks.set(hook, caller);
  config.beforeRedirect = hook;
}

function isTokenFailure(response: NonNullable<AxiosErrorLike['response']>): boolean {
  const challenge = String(response.headers?.['www-authenticate'] ?? '');
  if (/error="invalid_token"/.test(challenge)) return true;
  const code = (response.data as { error?: unknown } | undefined)?.error;
  return typeof code === 'string' && (RETRYABLE_TOKEN_CODES as readonly string[]).includes(code);
}

function setHeader(config: AxiosConfig, name: string, value: string): void {
  config.headers ??= {};
  if (typeof config.headers.set === 'function') config.headers.set(name, value);
  else config.headers[name] = value;
}

function getHeader(config: AxiosConfig, name: string): unknown {
  const headers = config.headers as (Record<string, unknown> & { get?: (n: string) => unknown }) | undefined;
  return typeof headers?.get === 'function' ? headers.get(name) : headers?.[name];
}
