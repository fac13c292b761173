import type { AuthClient } from '@tessera/client';
import { ChangePassword } from './ChangePassword.js';
import { Passkeys } from './Passkeys.js';
import { AuthenticatorApp } from './Totp.js';

/** Security: the authenticator app, passkeys and the password. */
export function Security({ client, onChanged }: { client: AuthClient; onChanged: () => void }) {
  return (
    <section className="card" aria-labelledby="security-title">
      <h2 id="security-title">Security</h2>
      <AuthenticatorApp client={client} />
      <Passkeys client={client} />
      <ChangePassword client={client} onChanged={onChanged} />
    </section>
  );
}
