/**
 * How the adapters learn the URL a DPoP proof must name (`htu`, RFC 9449 §4.3): the
 * request's absolute URL as the client addressed it. Behind a proxy that is not the
 * URL this process sees, hence `publicUrl`.
 */

/** An adapter's `publicUrl`, checked once: its origin and the path prefix a proxy strips. */
export interface PublicUrl {
  origin: string;
  /** `/api` for `https://example.com/api` (no trailing slash; empty for the root). */
  prefix: string;
}

/**
 * Checks an adapter's `publicUrl` option: an absolute http(s) URL, without query,
 * fragment or credentials. Its path, if any, is the prefix a proxy removes before
 * passing requests on (`https://example.com/api` in front of an app serving `/orders`).
 *
 * @throws TypeError for a value that cannot be right (a caller's bug, at construction)
 */
export function parsePublicUrl(publicUrl: string | undefined, where: string): PublicUrl | undefined {
  if (publicUrl === undefined) return undefined;
  let url: URL;
  try {
    url = new URL(publicUrl);
  } catch {
    throw new TypeError(`${where}: publicUrl must be an absolute URL, got ${String(publicUrl)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TypeError(`${where}: publicUrl must be http(s)`);
  if (url.search !== '' || url.hash !== '' || url.username !== '' || url.password !== '') {
    throw new TypeError(`${where}: publicUrl must be an origin, optionally with a path: no query, fragment or credentials`);
  }
  return { origin: url.origin, prefix: url.pathname.replace(/\/+$/, '') };
}

// A Host header: a name or an IP literal, and a port. Anything else is not trusted to build a URL.
const HOST = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/;

/**
 * The absolute URL of a request: `publicUrl`'s origin and prefix with the request's
 * path when set; otherwise `protocol://host` as the framework reports them (a `Host`
 * header, or `X-Forwarded-*` where the framework is told to trust its proxy) with the
 * path. The query is dropped (a proof's `htu` has none). `undefined` when it cannot be
 * known: then DPoP requests are refused.
 *
 * @param target the request-target: `/path?query`, or an absolute URL (absolute-form)
 */
export function requestUrl(publicUrl: PublicUrl | undefined, protocol: string | undefined, host: string | undefined, target: string | undefined): string | undefined {
  if (typeof target !== 'string') return undefined;
  let path: string;
  let origin: string | undefined;
  if (target.startsWith('/')) {
    path = target.split('?', 1)[0]!.split('#', 1)[0]!;
  } else {
    // absolute-form (RFC 9112 §3.2.2): its authority stands for the Host header.
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      return undefined; // `*` and the like name no resource
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
    path = url.pathname;
    origin = url.origin;
  }
  if (publicUrl) return `${publicUrl.origin}${publicUrl.prefix}${path}`;
  if (origin !== undefined) return `${origin}${path}`;
  const scheme = typeof protocol === 'string' ? protocol.replace(/:$/, '').toLowerCase() : undefined;
  if ((scheme !== 'http' && scheme !== 'https') || typeof host !== 'string' || !HOST.test(host)) return undefined;
  return `${scheme}://${host}${path}`;
}

/**
 * A header as Node received it: every value when it came more than once (from
 * `rawHeaders`, since Node keeps only the first `Authorization` and joins repeated
 * unknown headers with a comma), otherwise the parsed value (which middleware may
 * have set).
 */
export function headerValues(
  headers: Record<string, string | string[] | undefined>,
  rawHeaders: readonly string[] | undefined,
  name: 'authorization' | 'dpop',
): string | string[] | undefined {
  if (Array.isArray(rawHeaders)) {
    const values: string[] = [];
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      if (rawHeaders[i]!.length === name.length && rawHeaders[i]!.toLowerCase() === name) values.push(rawHeaders[i + 1]!);
    }
    if (values.length > 1) return values;
  }
  return headers[name];
}

/** Whether a Node socket is a TLS one (`tls.TLSSocket#encrypted`). */
export function isTls(socket: unknown): boolean {
  return typeof socket === 'object' && socket !== null && (socket as { encrypted?: unknown }).encrypted === true;
}
