import { type AuthClient, AuthClientError } from '@tessera/client';
import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { jsonInit, NETWORK_ERROR, readError, when } from './api.js';

interface PasskeyRow {
  id: string;
  name: string;
  created_at: string;
  last_used_at: string | null;
}

/** What the browser says when the user cancels or has no authenticator: not worth an alarm. */
function ceremonyMessage(error: unknown): string {
  if (error instanceof AuthClientError) return error.message;
  if (error instanceof Error && error.name === 'NotAllowedError') return 'The passkey prompt was closed or timed out.';
  if (error instanceof Error && error.name === 'InvalidStateError') return 'This authenticator already holds a passkey for your account.';
  return error instanceof Error && error.message ? error.message : NETWORK_ERROR;
}

/** Passkeys: add one (this device or a security key), list, rename, remove. */
export function Passkeys({ client }: { client: AuthClient }) {
  const [passkeys, setPasskeys] = useState<PasskeyRow[] | null>(null);
  const [name, setName] = useState('');
  const [password, setPassword] = useState('');
  const [needsPassword, setNeedsPassword] = useState<string | null>(null);
  const [renaming, setRenaming] = useState<{ id: string; name: string } | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    try {
      const res = await client.fetch('/auth/passkeys');
      if (res.ok) setPasskeys(((await res.json()) as { passkeys: PasskeyRow[] }).passkeys);
    } catch {
      setError(NETWORK_ERROR);
    }
  }, [client]);
  useEffect(() => {
    void load();
  }, [load]);

  const add = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setNotice(null);
    try {
      const added = await client.registerPasskey({
        ...(name.trim() ? { name: name.trim() } : {}),
        ...(needsPassword !== null ? { currentPassword: password } : {}),
      });
      setName('');
      setPassword('');
      setNeedsPassword(null);
      setNotice(`Passkey "${added.name}" added.`);
      await load();
    } catch (e) {
      // A session that signed in a while ago must confirm with the password first.
      if (e instanceof AuthClientError && e.code === 'invalid_credentials' && needsPassword === null) setNeedsPassword(e.message);
      else setError(ceremonyMessage(e));
    } finally {
      setBusy(false);
    }
  };

  const change = async (request: () => Promise<Response>) => {
    setError(null);
    setNotice(null);
    try {
      const res = await request();
      if (!res.ok) setError((await readError(res)).message);
    } catch {
      setError(NETWORK_ERROR);
    }
    await load();
  };

  const rename = async (event: FormEvent) => {
    event.preventDefault();
    if (!renaming) return;
    await change(() => client.fetch(`/auth/passkeys/${renaming.id}`, jsonInit('PATCH', { name: renaming.name.trim() })));
    setRenaming(null);
  };

  return (
    <div>
      <h4>Passkeys</h4>
      <p className="hint">Sign in with your fingerprint, face or screen lock, or a security key: no password to type or steal.</p>
      {passkeys !== null && passkeys.length === 0 && <p>No passkeys yet.</p>}
      <ul className="list" aria-label="Your passkeys">
        {(passkeys ?? []).map((p) =>
          renaming?.id === p.id ? (
            <li key={p.id}>
              <form className="inline" onSubmit={(e) => void rename(e)}>
                <label htmlFor="passkey-rename" className="visually-hidden">
                  New name for {p.name}
                </label>
                <input id="passkey-rename" required maxLength={64} value={renaming.name} onChange={(e) => setRenaming({ id: p.id, name: e.target.value })} />
                <button type="submit" className="small">
                  Save name
                </button>
                <button type="button" className="small" onClick={() => setRenaming(null)}>
                  Cancel
                </button>
              </form>
            </li>
          ) : (
            <li key={p.id}>
              <span>
                <strong>{p.name}</strong>
                <span className="hint">
                  {' '}
                  · added {when(p.created_at)} · last used {when(p.last_used_at)}
                </span>
              </span>
              <span>
                <button type="button" className="small" aria-label={`Rename ${p.name}`} onClick={() => setRenaming({ id: p.id, name: p.name })}>
                  Rename
                </button>{' '}
                <button type="button" className="small" aria-label={`Remove ${p.name}`} onClick={() => void change(() => client.fetch(`/auth/passkeys/${p.id}`, { method: 'DELETE' }))}>
                  Remove
                </button>
              </span>
            </li>
          ),
        )}
      </ul>
      <form onSubmit={(e) => void add(e)}>
        <label htmlFor="passkey-name">Passkey name (optional)</label>
        <input id="passkey-name" maxLength={64} value={name} onChange={(e) => setName(e.target.value)} placeholder="Work laptop" />
        {needsPassword !== null && (
          <>
            <p className="hint">{needsPassword}</p>
            <label htmlFor="passkey-password">Your password, to add a passkey</label>
            <input id="passkey-password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
          </>
        )}
        <button type="submit" disabled={busy}>
          Add a passkey
        </button>
      </form>
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
