import type { AuthClient } from '@tessera/client';
import { type FormEvent, useCallback, useEffect, useRef, useState } from 'react';
import { type AuditRow, NETWORK_ERROR, readError, when } from './api.js';

/** Events on one page of the admin audit list. */
const EVENTS_PAGE = 20;

/** The audit events of the contract, offered as suggestions in the filter. */
const EVENT_NAMES = [
  'user.registered',
  'login.succeeded',
  'login.failed',
  'token.refreshed',
  'token.reused',
  'session.revoked',
  'password.changed',
  'password.reset_requested',
  'password.reset',
  'email.verified',
  'user.disabled',
  'user.enabled',
  'user.removed',
  'user.roles_changed',
  'mfa.enabled',
  'mfa.disabled',
  'mfa.failed',
  'passkey.added',
  'passkey.removed',
  'key.rotated',
  'key.retired',
  'rate_limited',
  'dpop.rejected',
];

/** Everyone's audit events, newest first, filtered by user and event. `version` changes reload the first page. */
export function AdminAudit({ client, version }: { client: AuthClient; version: number }) {
  const [username, setUsername] = useState('');
  const [event, setEvent] = useState('');
  const [filter, setFilter] = useState({ username: '', event: '' });
  /** The `before` cursors of the pages shown so far after the first. */
  const [cursors, setCursors] = useState<string[]>([]);
  const [events, setEvents] = useState<AuditRow[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [reloads, setReloads] = useState(0);

  const before = cursors.at(-1) ?? null;
  const latest = useRef(0);
  /** Which request the list shows: it is busy (`aria-busy`) until the one asked for last has answered. */
  const wanted = JSON.stringify([filter, before, reloads]);
  const [shown, setShown] = useState<string | null>(null);
  const load = useCallback(async (key: string) => {
    const request = ++latest.current;
    setError(null);
    const params = new URLSearchParams({ limit: String(EVENTS_PAGE) });
    if (filter.username) params.set('username', filter.username);
    if (filter.event) params.set('event', filter.event);
    if (before) params.set('before', before);
    try {
      const res = await client.fetch(`/admin/audit?${params}`);
      if (request !== latest.current) return; // a newer request answers for the list
      if (!res.ok) {
        setError((await readError(res)).message);
        return;
      }
      const body = (await res.json()) as { events: AuditRow[]; next: string | null };
      if (request !== latest.current) return;
      setEvents(body.events);
      setNext(body.next ?? null);
    } catch {
      setError(NETWORK_ERROR);
    } finally {
      if (request === latest.current) setShown(key);
    }
  }, [client, filter, before]);

  useEffect(() => {
    void load(wanted);
  }, [load, wanted]);

  // A change elsewhere in the Admin section: show the newest events.
  useEffect(() => {
    if (version === 0) return;
    setCursors([]);
    setReloads((n) => n + 1);
  }, [version]);

  const submit = (e: FormEvent) => {
    e.preventDefault();
    setCursors([]);
    setFilter({ username: username.trim(), event: event.trim() });
    setReloads((n) => n + 1);
  };

  return (
    <section aria-labelledby="admin-audit-title">
      <h3 id="admin-audit-title">Audit events</h3>
      <form onSubmit={submit} aria-label="Audit filter">
        <div className="grid">
          <div>
            <label htmlFor="audit-user">Events of user</label>
            <input id="audit-user" value={username} onChange={(e) => setUsername(e.target.value)} placeholder="any user" />
          </div>
          <div>
            <label htmlFor="audit-event">Event name</label>
            <input id="audit-event" list="audit-event-names" value={event} onChange={(e) => setEvent(e.target.value)} placeholder="any event" />
            <datalist id="audit-event-names">
              {EVENT_NAMES.map((name) => (
                <option key={name} value={name} />
              ))}
            </datalist>
          </div>
        </div>
        <div className="actions">
          <button type="submit">Show events</button>
        </div>
      </form>
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      {events !== null && events.length === 0 && <p className="hint">No events.</p>}
      <ul className="list events" aria-labelledby="admin-audit-title" aria-busy={shown !== wanted}>
        {events?.map((e) => (
          <li key={e.id}>
            <span>
              <strong>{e.event}</strong> {e.username ?? <span className="hint">no user</span>}
              <span className="hint">
                {' '}
                · {e.outcome}
                {e.reason ? ` · ${e.reason}` : ''}
                {e.ip ? ` · ${e.ip}` : ''}
              </span>
            </span>
            <time className="hint" dateTime={e.at}>
              {when(e.at)}
            </time>
          </li>
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
