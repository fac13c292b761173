/** Shapes of the auth server's answers that the page reads, and how it reads errors. */

export interface Me {
  id: string;
  username: string;
  roles: string[];
  /** Null, or (as the server has it) left out, when the user has no email. */
  email?: string | null;
  email_verified?: boolean;
}

export interface SessionRow {
  id: string;
  created_at: string;
  last_used_at: string;
  expires_at?: string;
  user_agent: string | null;
  ip: string | null;
  current?: boolean;
  /** Its tokens are bound to the key of the device that signed in (DPoP). */
  dpop_bound?: boolean;
}

export interface AuditRow {
  id: string;
  at: string;
  event: string;
  user_id?: string | null;
  username?: string | null;
  session_id?: string | null;
  ip: string | null;
  user_agent?: string | null;
  outcome: string;
  reason: string | null;
}

export interface AdminUser {
  id: string;
  username: string;
  email: string | null;
  email_verified: boolean;
  roles: string[];
  disabled: boolean;
  mfa: boolean;
  created_at: string;
  active_sessions: number;
}

export interface AdminUserDetail extends AdminUser {
  sessions: SessionRow[];
}

/** What the page says when the server could not be reached at all. */
export const NETWORK_ERROR = 'Could not reach the server. Try again.';

/** The code and `message` of an error answer (`{error, message}`), or a sentence about the status. */
export async function readError(response: Response): Promise<{ code: string; message: string }> {
  let code = '';
  try {
    const body = (await response.json()) as { error?: unknown; message?: unknown };
    if (typeof body.error === 'string') code = body.error;
    if (typeof body.message === 'string' && body.message) return { code, message: body.message };
  } catch {
    // Not JSON: fall through.
  }
  return { code, message: `The server answered ${response.status}.` };
}

export async function errorMessage(response: Response): Promise<string> {
  return (await readError(response)).message;
}

/** A JSON POST to this origin without a token (register, forgot, reset, verify). */
export function postJson(path: string, body: unknown): Promise<Response> {
  return fetch(path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

/** `init` for a JSON request through the auth client's `fetch`. */
export function jsonInit(method: string, body: unknown): RequestInit {
  return { method, headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) };
}

/** `2030-01-01 12:00` style, in the reader's locale. */
export function when(iso: string | null | undefined): string {
  return iso ? new Date(iso).toLocaleString() : 'never';
}

export function describeAgent(agent: string | null | undefined): string {
  if (!agent) return 'Unknown device';
  const browser = /(Firefox|Edg|Chrome|Safari|curl|node|tessera-cli)/.exec(agent)?.[1] ?? 'Browser';
  return browser === 'Edg' ? 'Edge' : browser;
}
