import { type AuthClient, AuthClientError, createAuthClient, type LogoutReason, type Session } from '@tessera/client';
import { type FormEvent, useCallback, useEffect, useMemo, useState } from 'react';

/** What the page says when a session ended without the user asking. */
const LOGOUT_MESSAGES: Partial<Record<LogoutReason, string>> = {
  other_tab: 'You signed out in another tab.',
  token_expired: 'Your session expired. Please sign in again.',
  token_revoked: 'Your session was ended (signed out elsewhere, or your password changed). Please sign in again.',
  token_reused: 'For your safety your session was ended: a sign-in token was used twice. Please sign in again.',
  invalid_token: 'Your session is no longer valid. Please sign in again.',
};

/**
 * The example business API runs beside the auth server on :4001 (npm start): another
 * origin, so the client must be told it may send the access token there.
 */
const API_ORIGIN = `${location.protocol}//${location.hostname}:4001`;

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

interface SessionRow {
  id: string;
  created_at: string;
  last_used_at: string;
  user_agent: string | null;
  ip: string | null;
  current: boolean;
}
interface AuditRow {
  id: string;
  at: string;
  event: string;
  ip: string | null;
  outcome: string;
  reason: string | null;
}

export function App() {
  const client = useMemo<AuthClient>(() => createAuthClient({ baseUrl: location.origin, apiOrigins: [API_ORIGIN] }), []);
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [notice, setNotice] = useState<string | null>(null);

  useEffect(() => {
    const offSession = client.on('session', (s) => setSession(s));
    const offLogout = client.on('logout', ({ reason }) => setNotice(LOGOUT_MESSAGES[reason] ?? null));
    void client.getSession().then((s) => setSession(s));
    return () => {
      offSession();
      offLogout();
    };
  }, [client]);

  return (
    <main className="page">
      <header className="brand">
        <h1>Tessera</h1>
        <p className="tagline">Access + refresh tokens, done right.</p>
      </header>
      {session === undefined ? (
        <p className="card" aria-busy="true">Loading…</p>
      ) : session === null ? (
        <SignIn client={client} notice={notice} onSignedIn={() => setNotice(null)} />
      ) : (
        <SignedIn client={client} session={session} />
      )}
    </main>
  );
}

function SignIn({ client, notice, onSignedIn }: { client: AuthClient; notice: string | null; onSignedIn: () => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const run = async (action: 'login' | 'register') => {
    setBusy(true);
    setError(null);
    try {
      await (action === 'login' ? client.login(username, password) : client.register(username, password));
      onSignedIn();
    } catch (e) {
      setError(e instanceof AuthClientError ? e.message : 'Could not reach the server. Try again.');
    } finally {
      setBusy(false);
    }
  };
  const submit = (event: FormEvent) => {
    event.preventDefault();
    void run('login');
  };

  return (
    <form className="card" onSubmit={submit} aria-labelledby="signin-title">
      <h2 id="signin-title">Sign in</h2>
      {notice && <p className="notice" role="status">{notice}</p>}
      <label htmlFor="username">Username</label>
      <input id="username" name="username" autoComplete="username" required value={username} onChange={(e) => setUsername(e.target.value)} />
      <label htmlFor="password">Password</label>
      <input id="password" name="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
      <p className="hint">At least 8 characters.</p>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="actions">
        <button type="submit" className="primary" disabled={busy}>
          Sign in
        </button>
        <button type="button" disabled={busy} onClick={() => void run('register')}>
          Create account
        </button>
      </div>
    </form>
  );
}

function SignedIn({ client, session }: { client: AuthClient; session: Session }) {
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
    <section className="card" aria-labelledby="welcome">
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

function describeAgent(agent: string | null): string {
  if (!agent) return 'Unknown device';
  const browser = /(Firefox|Edg|Chrome|Safari|curl|node)/.exec(agent)?.[1] ?? 'Browser';
  return browser === 'Edg' ? 'Edge' : browser;
}

function pretty(text: string): string {
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}
