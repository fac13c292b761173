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
      setError(e instanceof AuthClientError ? e.message : NETWORK_ERROR);
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
    </form>
  );
}
