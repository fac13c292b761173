import { type AuthClient, AuthClientError } from '@tessera/client';
import { type FormEvent, useState } from 'react';
import { NETWORK_ERROR, postJson, readError } from './api.js';
import { FORGOT_HASH } from './hash_route.js';

/** Sign in, or create an account (with an optional email, for password resets by mail). */
export function SignIn({ client, onSignedIn, onUsername }: { client: AuthClient; onSignedIn: () => void; onUsername: (username: string) => void }) {
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [email, setEmail] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  /** After a right password for an account with a second factor: the code step. */
  const [needsCode, setNeedsCode] = useState(false);
  const [code, setCode] = useState('');

  const run = async (action: 'login' | 'register') => {
    setBusy(true);
    setError(null);
    try {
      if (action === 'register') {
        const address = email.trim();
        // The client's register() takes no email: register here, then sign in through the client.
        const res = await postJson('/auth/register', { username, password, ...(address ? { email: address } : {}) });
        if (!res.ok) {
          setError((await readError(res)).message);
          return;
        }
      }
      await client.login(username, password);
      onSignedIn();
    } catch (e) {
      if (e instanceof AuthClientError && e.code === 'mfa_required') {
        setNeedsCode(true);
        return;
      }
      setError(e instanceof AuthClientError ? e.message : NETWORK_ERROR);
    } finally {
      setBusy(false);
    }
  };

  const withPasskey = async () => {
    setBusy(true);
    setError(null);
    try {
      // No name asked: the browser offers the passkeys it holds for this site.
      await client.loginWithPasskey();
      onSignedIn();
    } catch (e) {
      const cancelled = e instanceof Error && e.name === 'NotAllowedError';
      setError(cancelled ? 'The passkey prompt was closed or timed out.' : e instanceof Error && e.message ? e.message : NETWORK_ERROR);
    } finally {
      setBusy(false);
    }
  };

  const submitCode = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      await client.completeMfa(code.trim());
      onSignedIn();
    } catch (e) {
      if (e instanceof AuthClientError && e.code === 'invalid_token') {
        // The step wore out (five wrong codes, or five minutes): start again from the password.
        setNeedsCode(false);
        setCode('');
      }
      setError(e instanceof AuthClientError ? e.message : NETWORK_ERROR);
    } finally {
      setBusy(false);
    }
  };

  if (needsCode) {
    return (
      <form className="card" onSubmit={(e) => void submitCode(e)} aria-labelledby="code-title">
        <h2 id="code-title">Two-step sign-in</h2>
        <p>Enter the 6-digit code from your authenticator app, or one of your recovery codes.</p>
        <label htmlFor="mfa-code">Code</label>
        <input id="mfa-code" name="code" autoComplete="one-time-code" required value={code} onChange={(e) => setCode(e.target.value)} />
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
        <div className="actions">
          <button type="submit" className="primary" disabled={busy}>
            Verify
          </button>
          <button
            type="button"
            onClick={() => {
              setNeedsCode(false);
              setError(null);
            }}
          >
            Back
          </button>
        </div>
      </form>
    );
  }
  const submit = (event: FormEvent) => {
    event.preventDefault();
    void run('login');
  };

  return (
    <form className="card" onSubmit={submit} aria-labelledby="signin-title">
      <h2 id="signin-title">Sign in</h2>
      <label htmlFor="username">Username</label>
      <input
        id="username"
        name="username"
        autoComplete="username"
        required
        value={username}
        onChange={(e) => {
          setUsername(e.target.value);
          onUsername(e.target.value);
        }}
      />
      <label htmlFor="password">Password</label>
      <input id="password" name="password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
      <p className="hint">
        At least 8 characters. <a href={FORGOT_HASH}>Forgot password?</a>
      </p>
      <label htmlFor="signup-email">Email</label>
      <input
        id="signup-email"
        name="email"
        type="email"
        autoComplete="email"
        value={email}
        onChange={(e) => setEmail(e.target.value)}
        aria-describedby="signup-email-hint"
      />
      <p className="hint" id="signup-email-hint">
        Optional, for Create account: lets you reset a forgotten password by mail.
      </p>
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
      <div className="actions">
        <button type="button" disabled={busy} onClick={() => void withPasskey()}>
          Sign in with a passkey
        </button>
      </div>
    </form>
  );
}
