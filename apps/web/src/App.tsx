import { type AuthClient, createAuthClient, type LogoutReason, type Session } from '@tessera/client';
import { type ReactNode, useCallback, useEffect, useMemo, useState } from 'react';
import { Account, API_ORIGIN } from './Account.js';
import { useHashRoute } from './hash_route.js';
import { ForgotPassword, ResetPassword, VerifyEmail } from './Recovery.js';
import { SignIn } from './SignIn.js';

/** What the page says when a session ended without the user asking. */
const LOGOUT_MESSAGES: Partial<Record<LogoutReason, string>> = {
  other_tab: 'You signed out in another tab.',
  token_expired: 'Your session expired. Please sign in again.',
  token_revoked: 'Your session was ended (signed out elsewhere, or your password changed). Please sign in again.',
  token_reused: 'For your safety your session was ended: a sign-in token was used twice. Please sign in again.',
  invalid_token: 'Your session is no longer valid. Please sign in again.',
  account_disabled: 'Your account is disabled. Ask an administrator.',
};

export const PASSWORD_CHANGED = 'Your password was changed. Sign in with your new password.';

export function App() {
  const client = useMemo<AuthClient>(() => createAuthClient({ baseUrl: location.origin, apiOrigins: [API_ORIGIN] }), []);
  const [session, setSession] = useState<Session | null | undefined>(undefined);
  const [notice, setNotice] = useState<string | null>(null);
  /** What was typed as the username, to start the forgot-password form with. */
  const [typed, setTyped] = useState('');
  /** Bumped when a mail link verified an email: the account view reloads it. */
  const [emailVersion, setEmailVersion] = useState(0);
  const { landing, clearLanding, forgot, closeForgot } = useHashRoute();

  useEffect(() => {
    const offSession = client.on('session', (s) => setSession(s));
    const offLogout = client.on('logout', ({ reason }) => setNotice(LOGOUT_MESSAGES[reason] ?? null));
    void client.getSession().then((s) => setSession(s));
    return () => {
      offSession();
      offLogout();
    };
  }, [client]);

  const emailVerified = useCallback(() => setEmailVersion((n) => n + 1), []);
  const passwordReset = async () => {
    clearLanding();
    closeForgot();
    // Every session of that user ended. If this browser was signed in as them, learn it now.
    if (client.getAccessToken()) await client.refresh().catch(() => null);
    setNotice(PASSWORD_CHANGED);
  };

  let view: ReactNode;
  if (landing?.kind === 'reset-password') {
    view = <ResetPassword key={landing.token} token={landing.token} onDone={passwordReset} onCancel={clearLanding} />;
  } else if (session === undefined) {
    view = (
      <p className="card" aria-busy="true">
        Loading…
      </p>
    );
  } else if (session === null) {
    view = forgot ? (
      <ForgotPassword initial={typed} onBack={closeForgot} />
    ) : (
      <SignIn client={client} onSignedIn={() => setNotice(null)} onUsername={setTyped} />
    );
  } else {
    view = <Account client={client} session={session} emailVersion={emailVersion} />;
  }

  return (
    <main className="page">
      <header className="brand">
        <h1>Tessera</h1>
        <p className="tagline">Access + refresh tokens, done right.</p>
      </header>
      {landing?.kind === 'verify-email' && <VerifyEmail key={landing.token} token={landing.token} onVerified={emailVerified} onClose={clearLanding} />}
      {notice && (
        <p className="card notice" role="status">
          {notice}
        </p>
      )}
      {view}
    </main>
  );
}
