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
}

/**
 * Puts an axios instance under a Tessera client, as the design notes' axios
 * interceptors do but with the same guarantees as `client.fetch`: the access
 * token attached, one refresh however many requests fail at once, each retried
 * once, never a loop. Returns a function that removes the interceptors.
 *
 * @example
 * const api = axios.create({ baseURL: 'https://api.example.com' })
 * withAuth(api, auth)
 * const { data } = await api.get('/api/profile')
 */
export function withAuth<C extends object>(instance: AxiosLike<C>, client: AuthClient): () => void {
  const requestId = instance.interceptors.request.use(async (config) => {
    if (!client.getAccessToken()) await client.getSession();
    const token = client.getAccessToken();
    if (token) setHeader(config as AxiosConfig, 'Authorization', `Bearer ${token}`);
    return config;
  });
  const responseId = instance.interceptors.response.use(
    (response) => response,
    async (error: AxiosErrorLike) => {
      const config = error.config;
      if (!config || config._tesseraRetried || !error.response || error.response.status !== 401 || !isTokenFailure(error.response)) {
        throw error;
      }
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
