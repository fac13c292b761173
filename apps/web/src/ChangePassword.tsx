import type { AuthClient } from '@tessera/client';
import { type FormEvent, useState } from 'react';
import { jsonInit, NETWORK_ERROR, readError } from './api.js';

/** Change password: the current one and a new one; every other session ends. */
export function ChangePassword({ client, onChanged }: { client: AuthClient; onChanged: () => void }) {
  const [current, setCurrent] = useState('');
  const [next, setNext] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  // Folded until asked for: a signed-in page shows no password field by default.
  const [open, setOpen] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      const res = await client.fetch('/auth/password', jsonInit('POST', { current_password: current, new_password: next }));
      if (res.ok) {
        setCurrent('');
        setNext('');
        setNotice('Password changed. Your other sessions were signed out.');
        setOpen(false);
        onChanged();
      } else {
        setError((await readError(res)).message);
      }
    } catch {
      setError(NETWORK_ERROR);
    } finally {
      setBusy(false);
    }
  };

  return (
    <div>
      <h4>Password</h4>
      {open ? (
        <form onSubmit={(e) => void submit(e)}>
          <label htmlFor="current-password">Current password</label>
          <input id="current-password" type="password" autoComplete="current-password" required value={current} onChange={(e) => setCurrent(e.target.value)} />
          <label htmlFor="changed-password">New password</label>
          <input id="changed-password" type="password" autoComplete="new-password" required minLength={8} value={next} onChange={(e) => setNext(e.target.value)} />
          <div className="actions">
            <button type="submit" className="primary" disabled={busy}>
              Save new password
            </button>
            <button type="button" onClick={() => setOpen(false)}>
              Cancel
            </button>
          </div>
        </form>
      ) : (
        <button type="button" onClick={() => setOpen(true)}>
          Change password
        </button>
      )}
      {notice && (
        <p className="notice" role="status">
          {notice}
        </p>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
