import { type FormEvent, useEffect, useState } from 'react';
import { errorMessage, NETWORK_ERROR, postJson, readError } from './api.js';
import { FORGOT_HASH } from './hash_route.js';

/** The same sentence whether or not an account matched: the page must not tell who has one. */
export const RESET_SENT =
  'If an account matches and has a verified email, a link to choose a new password is on its way. It works once, within 30 minutes.';

/** "Forgot password?": asks for a reset mail by username or email. */
export function ForgotPassword({ initial, onBack }: { initial: string; onBack: () => void }) {
  const [value, setValue] = useState(initial);
  const [sent, setSent] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    setSent(false);
    try {
      const who = value.trim();
      const res = await postJson('/auth/password/forgot', who.includes('@') ? { email: who } : { username: who });
      if (res.ok) setSent(true);
      else setError(await errorMessage(res));
    } catch {
      setError(NETWORK_ERROR);
    } finally {
      setBusy(false);
    }
  };

  return (
    // No accessible name on the form: `getByLabel('Password')` must find inputs only.
    <form className="card" onSubmit={(e) => void submit(e)}>
      <h2>Reset your password</h2>
      <p className="hint">We mail a one-time link to the verified email of your account.</p>
      <label htmlFor="forgot-who">Username or email</label>
      <input id="forgot-who" name="username" autoComplete="username" required value={value} onChange={(e) => setValue(e.target.value)} />
      {sent && (
        <p className="notice" role="status">
          {RESET_SENT}
        </p>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
      <div className="actions">
        <button type="submit" className="primary" disabled={busy}>
          Send reset link
        </button>
        <button type="button" onClick={onBack}>
          Back to sign in
        </button>
      </div>
    </form>
  );
}

/** The landing of a reset link: choose the new password. */
export function ResetPassword({ token, onDone, onCancel }: { token: string; onDone: () => void | Promise<void>; onCancel: () => void }) {
  const [password, setPassword] = useState('');
  const [error, setError] = useState<{ code: string; message: string } | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (event: FormEvent) => {
    event.preventDefault();
    setBusy(true);
    setError(null);
    try {
      const res = await postJson('/auth/password/reset', { token, new_password: password });
      if (res.ok) {
        await onDone();
        return;
      }
      setError(await readError(res));
    } catch {
      setError({ code: 'network_error', message: NETWORK_ERROR });
    } finally {
      setBusy(false);
    }
  };

  return (
    // No accessible name on the form: `New password` names the input alone.
    <form className="card" onSubmit={(e) => void submit(e)}>
      <h2>Choose a new password</h2>
      <p className="hint">Every device signed in to this account will be signed out.</p>
      <label htmlFor="new-password">New password</label>
      <input
        id="new-password"
        name="new-password"
        type="password"
        autoComplete="new-password"
        required
        minLength={8}
        value={password}
        onChange={(e) => setPassword(e.target.value)}
        aria-describedby="new-password-hint"
      />
      <p className="hint" id="new-password-hint">
        At least 8 characters.
      </p>
      {error && (
        <div className="error" role="alert">
          <p>{error.message}</p>
          {error.code === 'invalid_reset_token' && (
            <p>
              <a href={FORGOT_HASH} onClick={onCancel}>
                Ask for a new link
              </a>
            </p>
          )}
        </div>
      )}
      <div className="actions">
        <button type="submit" className="primary" disabled={busy}>
          Set new password
        </button>
        <button type="button" onClick={onCancel}>
          Cancel
        </button>
      </div>
    </form>
  );
}

/** One POST per token, whatever React's development mode does with effects. */
const verifications = new Map<string, Promise<string | null>>();
function verifyOnce(token: string): Promise<string | null> {
  let result = verifications.get(token);
  if (!result) {
    result = postJson('/auth/email/verify', { token }).then(
      async (res) => (res.ok ? null : errorMessage(res)),
      () => NETWORK_ERROR,
    );
    verifications.set(token, result);
  }
  return result;
}

/** The landing of a verification link: verifies at once and says how it went. */
export function VerifyEmail({ token, onVerified, onClose }: { token: string; onVerified: () => void; onClose: () => void }) {
  const [outcome, setOutcome] = useState<{ error: string | null } | undefined>(undefined);

  useEffect(() => {
    let live = true;
    void verifyOnce(token).then((error) => {
      if (!live) return;
      setOutcome({ error });
      if (error === null) onVerified();
    });
    return () => {
      live = false;
    };
  }, [token, onVerified]);

  return (
    // No accessible name on the card: `Email` names an input of the sign-in form below.
    <section className="card stack">
      <div className="row">
        <h2>Email verification</h2>
        <button type="button" className="small" onClick={onClose}>
          Close
        </button>
      </div>
      {outcome === undefined ? (
        <p aria-busy="true">Verifying your email…</p>
      ) : outcome.error === null ? (
        <p className="notice" role="status">
          Email verified. A forgotten password can now be reset by mail.
        </p>
      ) : (
        <p className="error" role="alert">
          {outcome.error}
        </p>
      )}
    </section>
  );
}
