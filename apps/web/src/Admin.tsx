import type { AuthClient, Session } from '@tessera/client';
import { type FormEvent, useCallback, useEffect, useId, useRef, useState } from 'react';
import { AdminAudit } from './Audit.js';
import { type AdminUser, type AdminUserDetail, describeAgent, jsonInit, NETWORK_ERROR, readError, when } from './api.js';

/** Users on one page of the admin list. */
const USERS_PAGE = 10;

/** For users with the role `admin`: everyone's accounts and audit events. */
export function Admin({ client, session }: { client: AuthClient; session: Session }) {
  // Every change made here is an audit event: the audit list reloads after each.
  const [changes, setChanges] = useState(0);
  const changed = useCallback(() => setChanges((n) => n + 1), []);
  return (
    <section className="card stack" aria-labelledby="admin-title">
      <h2 id="admin-title">Admin</h2>
      <AdminUsers client={client} selfId={session.userId} onChange={changed} />
      <AdminAudit client={client} version={changes} />
    </section>
  );
}

function AdminUsers({ client, selfId, onChange }: { client: AuthClient; selfId: string; onChange: () => void }) {
  const [search, setSearch] = useState('');
  const [query, setQuery] = useState('');
  /** The cursors of the pages before this one's (empty on the first page) and this page's own. */
  const [cursors, setCursors] = useState<string[]>([]);
  const [users, setUsers] = useState<AdminUser[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [reloads, setReloads] = useState(0);

  const cursor = cursors.at(-1) ?? null;
  const latest = useRef(0);
  /** Which request the list shows: it is busy (`aria-busy`) until the one asked for last has answered. */
  const wanted = JSON.stringify([query, cursor, reloads]);
  const [shown, setShown] = useState<string | null>(null);
  const load = useCallback(async (key: string) => {
    const request = ++latest.current;
    setError(null);
    const params = new URLSearchParams({ query, limit: String(USERS_PAGE) });
    if (cursor) params.set('cursor', cursor);
    try {
      const res = await client.fetch(`/admin/users?${params}`);
      if (request !== latest.current) return; // a newer request answers for the list
      if (!res.ok) {
        setError((await readError(res)).message);
        return;
      }
      const body = (await res.json()) as { users: AdminUser[]; next: string | null };
      if (request !== latest.current) return;
      setUsers(body.users);
      setNext(body.next ?? null);
    } catch {
      setError(NETWORK_ERROR);
    } finally {
      if (request === latest.current) setShown(key);
    }
  }, [client, query, cursor]);

  useEffect(() => {
    void load(wanted);
  }, [load, wanted]);

  const submit = (event: FormEvent) => {
    event.preventDefault();
    setCursors([]);
    setQuery(search.trim());
    // The same query again still reloads: someone may have signed up meanwhile.
    setReloads((n) => n + 1);
  };

  const updated = (user: Partial<AdminUser> & { id: string }) => {
    setUsers((list) => list?.map((u) => (u.id === user.id ? { ...u, ...user } : u)) ?? list);
    onChange();
  };

  return (
    <section aria-labelledby="admin-users-title">
      <h3 id="admin-users-title">Users</h3>
      <form onSubmit={submit}>
        <label htmlFor="admin-search">Search users</label>
        <div className="inline">
          <input id="admin-search" type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="Name or email" />
          <button type="submit">Search</button>
        </div>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {users !== null && users.length === 0 && <p className="hint">No user matches.</p>}
      <ul className="list users" aria-labelledby="admin-users-title" aria-busy={shown !== wanted}>
        {users?.map((u) => (
          <UserRow key={u.id} client={client} user={u} self={u.id === selfId} onUpdated={updated} />
        ))}
      </ul>
      <div className="actions">
        {cursors.length > 0 && (
          <button type="button" disabled={shown !== wanted} onClick={() => setCursors([])}>
            First page
          </button>
        )}
        {next && (
          <button type="button" disabled={shown !== wanted} onClick={() => setCursors((list) => [...list, next])}>
            Next page
          </button>
        )}
      </div>
    </section>
  );
}

function UserRow({
  client,
  user,
  self,
  onUpdated,
}: {
  client: AuthClient;
  user: AdminUser;
  self: boolean;
  onUpdated: (user: Partial<AdminUser> & { id: string }) => void;
}) {
  const id = useId();
  const name = user.username;
  const [roles, setRoles] = useState(user.roles.join(', '));
  const [status, setStatus] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const [resetUrl, setResetUrl] = useState<string | null>(null);
  const [sessions, setSessions] = useState<AdminUserDetail['sessions'] | null>(null);

  const savedRoles = user.roles.join(', ');
  useEffect(() => setRoles(savedRoles), [savedRoles]);

  const base = `/admin/users/${encodeURIComponent(user.id)}`;

  /** Runs one admin call; `done` gets the answer when it succeeded. */
  const act = async (method: string, path: string, body: unknown, done: (res: Response) => Promise<void>) => {
    setBusy(true);
    setError(null);
    setStatus(null);
    try {
      const res = await client.fetch(path, body === undefined ? { method } : jsonInit(method, body));
      if (res.ok) await done(res);
      else setError((await readError(res)).message);
    } catch {
      setError(NETWORK_ERROR);
    } finally {
      setBusy(false);
    }
  };

  /** The user as the server has it now (after a change that does not answer with it). */
  const reload = async (): Promise<AdminUserDetail | null> => {
    const res = await client.fetch(base);
    if (!res.ok) return null;
    const detail = (await res.json()) as AdminUserDetail;
    onUpdated(detail);
    return detail;
  };

  const saveRoles = (event: FormEvent) => {
    event.preventDefault();
    const list = roles.split(/[\s,]+/).filter(Boolean);
    void act('PATCH', base, { roles: list }, async (res) => {
      onUpdated((await res.json()) as AdminUser);
      setStatus(
        list.length
          ? `Roles of ${name}: ${list.join(', ')}. They reach ${name}’s tokens at the next refresh.`
          : `${name} has no roles now. This reaches their tokens at the next refresh.`,
      );
    });
  };

  const toggleDisabled = () =>
    void act('PATCH', base, { disabled: !user.disabled }, async (res) => {
      const next = (await res.json()) as AdminUser;
      onUpdated(next);
      setSessions(null);
      setStatus(next.disabled ? `${name} is disabled; every session of theirs ended.` : `${name} is enabled and may sign in again.`);
    });

  const endSessions = () =>
    void act('DELETE', `${base}/sessions`, undefined, async () => {
      setStatus(`Every session of ${name} ended.`);
      const detail = await reload();
      if (sessions !== null) setSessions(detail?.sessions ?? []);
    });

  const makeResetLink = () =>
    void act('POST', `${base}/password-reset`, undefined, async (res) => {
      const body = (await res.json()) as { reset_url: string; mailed?: boolean };
      setResetUrl(body.reset_url);
      setStatus(
        `A one-time reset link for ${name}, valid for 30 minutes. ${body.mailed ? 'It was also mailed to their verified email.' : 'Give it to them privately.'}`,
      );
      onUpdated({ id: user.id });
    });

  const toggleSessions = () => {
    if (sessions !== null) {
      setSessions(null);
      return;
    }
    void act('GET', base, undefined, async (res) => {
      const detail = (await res.json()) as AdminUserDetail;
      setSessions(detail.sessions);
    });
  };

  const copy = async () => {
    try {
      await navigator.clipboard.writeText(resetUrl ?? '');
      setStatus('Reset link copied.');
    } catch {
      setStatus('Select the link and copy it.');
    }
  };

  return (
    <li className="user">
      <div className="row">
        <strong>
          {name}
          {self && <span className="hint"> (you)</span>}
        </strong>
        {user.disabled && <span className="badge warn">disabled</span>}
      </div>
      <p className="hint">
        {user.email ? `${user.email} (${user.email_verified ? 'verified' : 'not verified'})` : 'no email'} · {user.mfa ? 'second factor on' : 'no second factor'} ·{' '}
        {user.active_sessions} active {user.active_sessions === 1 ? 'session' : 'sessions'} · since {when(user.created_at)}
      </p>
      <form className="inline" onSubmit={saveRoles}>
        <label htmlFor={`${id}-roles`} className="inline-label">
          Roles
        </label>
        <input id={`${id}-roles`} aria-label={`Roles of ${name}`} value={roles} onChange={(e) => setRoles(e.target.value)} placeholder="none" />
        <button type="submit" className="small" disabled={busy} aria-label={`Save roles of ${name}`}>
          Save roles
        </button>
      </form>
      <div className="actions">
        <button type="button" className="small" disabled={busy} onClick={toggleDisabled} aria-label={`${user.disabled ? 'Enable' : 'Disable'} ${name}`}>
          {user.disabled ? 'Enable' : 'Disable'}
        </button>
        <button type="button" className="small" disabled={busy} onClick={endSessions} aria-label={`End sessions of ${name}`}>
          End sessions
        </button>
        <button type="button" className="small" disabled={busy} onClick={makeResetLink} aria-label={`Reset link for ${name}`}>
          Reset link
        </button>
        <button
          type="button"
          className="small"
          disabled={busy}
          onClick={toggleSessions}
          aria-expanded={sessions !== null}
          aria-label={`${sessions === null ? 'Show' : 'Hide'} sessions of ${name}`}
        >
          {sessions === null ? 'Show sessions' : 'Hide sessions'}
        </button>
      </div>
      {resetUrl && (
        <div className="inline">
          <input readOnly aria-label={`Reset URL for ${name}`} value={resetUrl} onFocus={(e) => e.target.select()} />
          <button type="button" className="small" onClick={() => void copy()} aria-label={`Copy link for ${name}`}>
            Copy
          </button>
        </div>
      )}
      {sessions !== null && (
        <ul className="list sessions" aria-label={`Sessions of ${name}`}>
          {sessions.length === 0 && <li className="hint">No active session.</li>}
          {sessions.map((s) => (
            <li key={s.id}>
              <span>
                <strong>{describeAgent(s.user_agent)}</strong>
                <span className="hint">
                  {' '}
                  · {s.ip ?? 'unknown address'} · last used {when(s.last_used_at)} · expires {when(s.expires_at)}
                </span>
              </span>
            </li>
          ))}
        </ul>
      )}
      {status && (
        <p className="notice" role="status">
          {status}
        </p>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </li>
  );
}
