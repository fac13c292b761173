import { useCallback, useEffect, useState } from 'react';

/**
 * Links in mail carry their one-time token in the URL fragment
 * (`/#reset-password=<token>`, `/#verify-email=<token>`): a fragment never reaches a
 * server log or a Referer header. The page reads it once, then takes it out of the
 * address bar (and so out of the history) with `history.replaceState`.
 */
export interface Landing {
  kind: 'reset-password' | 'verify-email';
  token: string;
}

/** The fragment of the "Forgot password?" link: a view, not a secret, so it stays in the address bar. */
export const FORGOT_HASH = '#forgot-password';

function tokenFrom(hash: string): Landing | null {
  const match = /^#(reset-password|verify-email)=([^&]+)/.exec(hash);
  if (!match) return null;
  let token = match[2]!;
  try {
    token = decodeURIComponent(token);
  } catch {
    // Not percent-encoded: use it as it is; the server says whether it is valid.
  }
  return { kind: match[1] as Landing['kind'], token };
}

function forgetToken(): void {
  history.replaceState(history.state, '', location.pathname + location.search);
}

/** The token landing (if the page was opened from a mail link) and whether the forgot-password view is asked for. */
export function useHashRoute(): { landing: Landing | null; clearLanding: () => void; forgot: boolean; closeForgot: () => void } {
  const [landing, setLanding] = useState<Landing | null>(() => tokenFrom(location.hash));
  const [forgot, setForgot] = useState(() => location.hash === FORGOT_HASH);

  useEffect(() => {
    const read = () => {
      const found = tokenFrom(location.hash);
      if (found) {
        setLanding(found);
        forgetToken();
      }
      setForgot(location.hash === FORGOT_HASH);
    };
    read();
    // A link opened in a tab that already shows the page changes only the fragment: no reload.
    window.addEventListener('hashchange', read);
    return () => window.removeEventListener('hashchange', read);
  }, []);

  const clearLanding = useCallback(() => setLanding(null), []);
  /** Back to the sign-in form (a new history entry: the browser's Back returns to the form left). */
  const closeForgot = useCallback(() => {
    if (location.hash === FORGOT_HASH) history.pushState(history.state, '', location.pathname + location.search);
    setForgot(false);
  }, []);
  return { landing, clearLanding, forgot, closeForgot };
}
