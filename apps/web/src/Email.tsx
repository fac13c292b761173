import type { AuthClient } from '@tessera/client';
import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { jsonInit, type Me, NETWORK_ERROR, readError } from './api.js';

/** The signed-in user's email: shows it and whether it is verified; sets or changes it. */
export function EmailSettings({ client, version }: { client: AuthClient; version: number }) {
  const [me, setMe] = useState<Me | null>(null);
  const [email, setEmail] = useState('');
  const [sent, setSent] = useState<string | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  /** Set when the server wants the password before moving the address (why, in its words). */
  const [needsPassword, setNeedsPassword] = useState<string | null>(null);
  const [password, setPassword] = useState('');

  const load = useCallback(async () => {
    try {
      const res = await client.fetch('/auth/me');
      if (res.ok) setMe((await res.json()) as Me);
    } catch {
      setError('Could not load your account. Check your connection.');
    }
  }, [client]);

  // `version` changes when an email was verified elsewhere on the page (a mail link).
  useEffect(() => {
    void version;
    void load();
  }, [load, version]);

  const save = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setSent(null);
    try {
      const address = email.trim();
      const res = await client.fetch('/auth/email', jsonInit('POST', { email: address, ...(needsPassword !== null ? { current_password: password } : {}) }));
      if (res.ok) {
        setSent(`We sent a verification link to ${address}. Open it to verify your email.`);
        setEmail('');
        setPassword('');
        setNeedsPassword(null);
        await load();
      } else {
        const { code, message } = await readError(res);
        // Reset links go to this address: moving it can need the password again.
        if (code === 'invalid_credentials' && needsPassword === null) setNeedsPassword(message);
        else setError(message);
      }
    } catch {
      setError(NETWORK_ERROR);
    } finally {
      setBusy(false);
    }
  };

  return (
    // No accessible name on this block: `Email` names the input alone.
    <div>
      <h3>Email</h3>
      <p data-testid="email-status">
        {me === null ? (
          'Loading…'
        ) : !me.email ? (
          'No email yet. Add one to be able to reset a forgotten password.'
        ) : (
          <>
            <strong>{me.email}</strong>{' '}
            {me.email_verified ? (
              <span className="badge">verified</span>
            ) : (
              <span className="badge warn">not verified: open the link we mailed you</span>
            )}
          </>
        )}
      </p>
      <form onSubmit={(e) => void save(e)}>
        <label htmlFor="account-email">Email</label>
        <div className="inline">
          <input id="account-email" name="email" type="email" autoComplete="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
          <button type="submit" disabled={busy}>
            Save email
          </button>
        </div>
        {needsPassword !== null && (
          <>
            <p className="hint">{needsPassword}</p>
            <label htmlFor="email-password">Your password, to move your address</label>
            <input id="email-password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
          </>
        )}
      </form>
      {sent && (
        <p className="notice" role="status">
          {sent}
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
