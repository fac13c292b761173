import type { AuthClient } from '@tessera/client';
import { type FormEvent, useCallback, useEffect, useState } from 'react';
import { jsonInit, NETWORK_ERROR, readError } from './api.js';

interface MfaStatus {
  totp: boolean;
  recovery_codes_left: number;
}

/** An enrolment under way: the secret, its QR code, and whether the server wants the password again first. */
type Step = { kind: 'idle' } | { kind: 'password'; message: string } | { kind: 'scan'; secret: string; qr: string } | { kind: 'codes'; codes: string[] };

/**
 * The authenticator app (TOTP): set it up (QR code and secret, then a code proves
 * it works and the ten recovery codes are shown once), or turn it off.
 */
export function AuthenticatorApp({ client }: { client: AuthClient }) {
  const [status, setStatus] = useState<MfaStatus | null>(null);
  const [step, setStep] = useState<Step>({ kind: 'idle' });
  const [code, setCode] = useState('');
  const [password, setPassword] = useState('');
  const [off, setOff] = useState('');
  const [turningOff, setTurningOff] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  const load = useCallback(async () => {
    try {
      const res = await client.fetch('/auth/mfa');
      if (res.ok) setStatus((await res.json()) as MfaStatus);
    } catch {
      setError(NETWORK_ERROR);
    }
  }, [client]);
  useEffect(() => {
    void load();
  }, [load]);

  /** Runs a request, showing its error; the answer when it succeeded. */
  const attempt = async (request: () => Promise<Response>): Promise<Response | null> => {
    setBusy(true);
    setError(null);
    try {
      const res = await request();
      if (res.ok) return res;
      const { code: errorCode, message } = await readError(res);
      // A session that signed in a while ago must confirm with the password first.
      if (errorCode === 'invalid_credentials' && step.kind !== 'scan') setStep({ kind: 'password', message });
      else setError(message);
      return null;
    } catch {
      setError(NETWORK_ERROR);
      return null;
    } finally {
      setBusy(false);
    }
  };

  const start = async (event?: FormEvent) => {
    event?.preventDefault();
    const body = step.kind === 'password' ? jsonInit('POST', { current_password: password }) : { method: 'POST' };
    const res = await attempt(() => client.fetch('/auth/mfa/totp', body));
    if (!res) return;
    const { secret, otpauth_uri } = (await res.json()) as { secret: string; otpauth_uri: string };
    setPassword('');
    // Loaded on first use: most visits never set up an app.
    const { toDataURL } = await import('qrcode');
    setStep({ kind: 'scan', secret, qr: await toDataURL(otpauth_uri, { margin: 1, width: 192 }) });
  };

  const confirm = async (event: FormEvent) => {
    event.preventDefault();
    const res = await attempt(() => client.fetch('/auth/mfa/totp/confirm', jsonInit('POST', { code: code.trim() })));
    if (!res) return;
    setCode('');
    setStep({ kind: 'codes', codes: ((await res.json()) as { recovery_codes: string[] }).recovery_codes });
    await load();
  };

  const turnOff = async (event: FormEvent) => {
    event.preventDefault();
    const value = off.trim();
    // Six digits or a recovery code is a code; anything else is the password.
    const body = /^\d{6}$/.test(value) || /^[a-z2-7]{4}(-?[a-z2-7]{4}){3}$/i.test(value) ? { code: value } : { password: off };
    const res = await attempt(() => client.fetch('/auth/mfa/totp', jsonInit('DELETE', body)));
    if (!res) return;
    setOff('');
    setTurningOff(false);
    setStep({ kind: 'idle' });
    await load();
  };

  return (
    <div>
      <h4>Authenticator app</h4>
      {status === null ? (
        <p>Loading…</p>
      ) : step.kind === 'codes' ? (
        <div>
          <p role="status">The authenticator app is on. Save these recovery codes somewhere safe: each signs you in once without the app. They are shown once.</p>
          <ol className="codes" aria-label="Recovery codes">
            {step.codes.map((c) => (
              <li key={c}>
                <code>{c}</code>
              </li>
            ))}
          </ol>
          <button type="button" onClick={() => setStep({ kind: 'idle' })}>
            I saved them
          </button>
        </div>
      ) : status.totp ? (
        <>
          <p data-testid="totp-status">
            On · {status.recovery_codes_left} recovery code{status.recovery_codes_left === 1 ? '' : 's'} left
          </p>
          {turningOff ? (
            <form onSubmit={(e) => void turnOff(e)}>
              <label htmlFor="totp-off">A current code, a recovery code or your password</label>
              <input id="totp-off" type="password" autoComplete="off" required value={off} onChange={(e) => setOff(e.target.value)} />
              <div className="actions">
                <button type="submit" disabled={busy}>
                  Confirm turning it off
                </button>
                <button type="button" onClick={() => setTurningOff(false)}>
                  Cancel
                </button>
              </div>
            </form>
          ) : (
            <button type="button" onClick={() => setTurningOff(true)}>
              Turn off authenticator app
            </button>
          )}
        </>
      ) : step.kind === 'scan' ? (
        <form onSubmit={(e) => void confirm(e)}>
          <p>Scan this QR code with your authenticator app, or type the secret into it. Then enter the 6-digit code it shows.</p>
          <img src={step.qr} width={192} height={192} alt="QR code for your authenticator app" />
          <p>
            Secret: <code data-testid="totp-secret">{step.secret}</code>
          </p>
          <label htmlFor="totp-code">Code</label>
          <div className="inline">
            <input id="totp-code" inputMode="numeric" autoComplete="one-time-code" required value={code} onChange={(e) => setCode(e.target.value)} />
            <button type="submit" className="primary" disabled={busy}>
              Turn on
            </button>
          </div>
        </form>
      ) : step.kind === 'password' ? (
        <form onSubmit={(e) => void start(e)}>
          <p className="hint">{step.message}</p>
          <label htmlFor="totp-password">Your password, to set up the app</label>
          <div className="inline">
            <input id="totp-password" type="password" autoComplete="current-password" required value={password} onChange={(e) => setPassword(e.target.value)} />
            <button type="submit" disabled={busy}>
              Set up authenticator app
            </button>
          </div>
        </form>
      ) : (
        <>
          <p className="hint">Off. With an app (Google Authenticator, 1Password, Aegis…), signing in also asks for a code from your phone.</p>
          <button type="button" disabled={busy} onClick={() => void start()}>
            Set up authenticator app
          </button>
        </>
      )}
      {error && (
        <p className="error" role="alert">
          {error}
        </p>
      )}
    </div>
  );
}
