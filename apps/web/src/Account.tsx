import type { AuthClient, Session } from '@tessera/client';
import { useCallback, useEffect, useState } from 'react';
import { Admin } from './Admin.js';
import { type AuditRow, describeAgent, type SessionRow } from './api.js';
import { EmailSettings } from './Email.js';
import { Security } from './Security.js';

/**
 * The example business API runs beside the auth server on :4001 (npm start): another
 * origin, so the client must be told it may send the access token there.
 */
export const API_ORIGIN = `${location.protocol}//${location.hostname}:4001`;

/** The business API if it answers; else /auth/me. */
async function findApi(): Promise<string> {
  try {
    const res = await fetch(`${API_ORIGIN}/api/public`, { signal: AbortSignal.timeout(1500) });
    if (res.ok) return `${API_ORIGIN}/api/profile`;
  } catch {
    // Not running, or not reachable from this origin.
  }
  return `${location.origin}/auth/me`;
}

/** Signed in: the API demo, the email, sessions and recent events; Security; and the Admin section for admins. */
export function Account({ client, session, emailVersion }: { client: AuthClient; session: Session; emailVersion: number }) {
  // Bumped by Security when a change ends other sessions: the session list reloads.
  const [changes, setChanges] = useState(0);
  return (
    <>
      <SignedIn client={client} session={session} emailVersion={emailVersion} changes={changes} />
      <Security client={client} onChanged={() => setChanges((n) => n + 1)} />
      {session.roles.includes('admin') && <Admin client={client} session={session} />}
    </>
  );
}

function SignedIn({ client, session, emailVersion, changes }: { client: AuthClient; session: Session; emailVersion: number; changes: number }) {
  const [result, setResult] = useState<string>('Not called yet.');
  const [error, setError] = useState<string | null>(null);
  const [sessions, setSessions] = useState<SessionRow[]>([]);
  const [events, setEvents] = useState<AuditRow[]>([]);
  const [api, setApi] = useState<string | null>(null);
  const [calls, setCalls] = useState(0);

  const load = useCallback(async () => {
    try {
      const [s, a] = await Promise.all([client.fetch('/auth/sessions'), client.fetch('/auth/audit?limit=10')]);
      if (s.ok) setSessions(((await s.json()) as { sessions: SessionRow[] }).sessions);
      if (a.ok) setEvents(((await a.json()) as { events: AuditRow[] }).events);
    } catch {
      setError('Could not load your sessions. Check your connection.');
    }
  }, [client]);

  useEffect(() => {
    void load();
    void findApi().then(setApi);
  }, [load]);
  useEffect(() => {
    if (changes > 0) void load();
  }, [changes, load]);

  const callApi = async () => {
    setError(null);
    try {
      const url = api ?? (await findApi());
      const res = await client.fetch(url);
      const body = await res.text();
      const n = calls + 1;
      setCalls(n);
      setResult(`${res.status} ${res.statusText} from ${new URL(url).host}${new URL(url).pathname} (call ${n}, ${new Date().toLocaleTimeString()})\n${pretty(body)}`);
      if (!res.ok) setError(`The API answered ${res.status}.`);
    } catch {
      setError('Could not reach the API.');
    }
  };

  const endSession = async (id: string) => {
    const res = await client.fetch(`/auth/sessions/${id}`, { method: 'DELETE' });
    if (!res.ok) setError('Could not end that session.');
    await load();
  };

  const signOutEverywhere = async () => {
    await client.fetch('/auth/logout-all', { method: 'POST' });
    await client.logout().catch(() => {});
  };

  return (
    // Not a named region: a username such as "admin2" must not make a second match for the region `Admin`.
    <section className="card">
      <div className="row">
        <h2 id="welcome">Signed in as {session.username}</h2>
        <button type="button" onClick={() => void client.logout()}>
          Sign out
        </button>
      </div>
      {session.roles.length > 0 && <p className="hint">Roles: {session.roles.join(', ')}</p>}

      <h3>Protected API</h3>
      <p className="hint">Calls {api ? new URL(api).host + new URL(api).pathname : 'the API'} with your access token; an expired token is refreshed silently.</p>
      <button type="button" className="primary" onClick={() => void callApi()}>
        Call API
      </button>
      <pre className="result" data-testid="api-result" aria-live="polite">
        {result}
      </pre>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}

      <EmailSettings client={client} version={emailVersion} />

      <h3>Your sessions</h3>
      <ul className="list">
        {sessions.map((s) => (
          <li key={s.id}>
            <span>
              <strong>{s.current ? 'This device' : describeAgent(s.user_agent)}</strong>
              <span className="hint">
                {' '}
                · {s.ip ?? 'unknown address'} · last used {new Date(s.last_used_at).toLocaleString()}
              </span>
              {s.dpop_bound && (
                <span className="badge" title="A stolen token of this session is useless without this device's key (DPoP)">
                  bound to its device key
                </span>
              )}
            </span>
            {!s.current && (
              <button type="button" className="small" onClick={() => void endSession(s.id)} aria-label={`End session on ${describeAgent(s.user_agent)}`}>
                End session
              </button>
            )}
          </li>
        ))}
      </ul>
      <button type="button" onClick={() => void signOutEverywhere()}>
        End all sessions
      </button>

      <h3>Recent security events</h3>
      <ul className="list events">
        {events.map((e) => (
          <li key={e.id}>
            <span>
              <strong>{e.event}</strong>
              {e.reason ? <span className="hint"> · {e.reason}</span> : null}
            </span>
            <time className="hint" dateTime={e.at}>
              {new Date(e.at).toLocaleString()}
            </time>
          </li>
        ))}
      </ul>
    </section>
  );
}

function pretty(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}
