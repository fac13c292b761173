import type { Database, Queryable } from './database.js';

/**
 * Versioned schema changes, applied in order at start (`tessera serve`) or by
 * `tessera migrate`. Never edit a released migration: add the next one.
 * Plain PostgreSQL, so PGlite and a real server run the very same text.
 */
export const MIGRATIONS: readonly { version: number; name: string; sql: string }[] = [
  {
    version: 1,
    name: 'users, sessions, refresh tokens, signing keys, audit log',
    sql: `
CREATE TABLE users (
  id uuid PRIMARY KEY,
  username text NOT NULL,
  password_hash text NOT NULL,
  roles text[] NOT NULL DEFAULT '{}',
  disabled_at timestamptz,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL
);
-- Usernames are unique regardless of case: "Alice" cannot shadow "alice".
CREATE UNIQUE INDEX users_username_key ON users (lower(username));

CREATE TABLE sessions (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL,
  last_used_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  revoked_at timestamptz,
  revoked_reason text,
  user_agent text,
  ip text
);
CREATE INDEX sessions_user_id_idx ON sessions (user_id);
CREATE INDEX sessions_revoked_at_idx ON sessions (revoked_at) WHERE revoked_at IS NOT NULL;

-- One row per refresh token ever issued; a session is one family (a chain of
-- parent -> child). Only a SHA-256 of the token's jti is kept: a copy of this
-- table does not let anyone present a token.
CREATE TABLE refresh_tokens (
  jti_hash text PRIMARY KEY,
  session_id uuid NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
  parent_hash text UNIQUE,
  issued_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);
CREATE INDEX refresh_tokens_session_id_idx ON refresh_tokens (session_id);

CREATE TABLE signing_keys (
  kid text PRIMARY KEY,
  alg text NOT NULL,
  public_jwk jsonb NOT NULL,
  private_jwk jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  retired_at timestamptz
);

-- No foreign keys: the history of a removed user or session must survive it.
CREATE TABLE audit_events (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  at timestamptz NOT NULL,
  event text NOT NULL,
  user_id uuid,
  username text,
  session_id uuid,
  ip text,
  user_agent text,
  outcome text NOT NULL,
  reason text
);
CREATE INDEX audit_events_user_id_idx ON audit_events (user_id, id DESC);
`,
  },
  {
    version: 2,
    name: 'key activation times; sessions outlive a removed user',
    sql: `
-- A rotated-in key is published at once but signs only from activates_at.
ALTER TABLE signing_keys ADD COLUMN activates_at timestamptz;
UPDATE signing_keys SET activates_at = created_at;
ALTER TABLE signing_keys ALTER COLUMN activates_at SET NOT NULL;
-- A removed user's sessions stay (revoked), so the revocation feed still tells verifiers.
ALTER TABLE sessions ALTER COLUMN user_id DROP NOT NULL;
ALTER TABLE sessions DROP CONSTRAINT sessions_user_id_fkey;
ALTER TABLE sessions ADD CONSTRAINT sessions_user_id_fkey FOREIGN KEY (user_id) REFERENCES users (id) ON DELETE SET NULL;
CREATE INDEX audit_events_event_idx ON audit_events (event, id DESC);
`,
  },
  {
    version: 3,
    name: "a session row holds its refresh token's state; one UPDATE rotates it",
    sql: `
-- A session's refresh tokens are one chain, and only two links matter: the current
-- one, and the one it replaced (a replay within the grace window). Anything older
-- with a valid signature is reuse. Keeping both hashes on the session row makes a
-- rotation one conditional UPDATE instead of an insert, an update and a lookup.
ALTER TABLE sessions ADD COLUMN refresh_hash text;
ALTER TABLE sessions ADD COLUMN refresh_issued_at timestamptz;
ALTER TABLE sessions ADD COLUMN refresh_expires_at timestamptz;
ALTER TABLE sessions ADD COLUMN previous_hash text;
ALTER TABLE sessions ADD COLUMN rotated_at timestamptz;
UPDATE sessions s
   SET refresh_hash = t.jti_hash, refresh_issued_at = t.issued_at, refresh_expires_at = t.expires_at,
       previous_hash = t.parent_hash, rotated_at = p.used_at
  FROM refresh_tokens t LEFT JOIN refresh_tokens p ON p.jti_hash = t.parent_hash
 WHERE t.session_id = s.id AND t.used_at IS NULL;
DROP TABLE refresh_tokens;
`,
  },
  {
    version: 4,
    name: 'indexes for the retention job',
    sql: `
-- The retention job deletes sessions that ended (revoked or expired) long ago, and
-- audit events by age: both scans start from the oldest rows.
CREATE INDEX sessions_expires_at_idx ON sessions (expires_at);
CREATE INDEX audit_events_at_idx ON audit_events (at);
`,
  },
  {
    version: 5,
    name: 'revocations numbered in commit order: the revocation feed pages by that number',
    sql: `
-- The feed's cursor. A revoking transaction takes the next numbers from this one row
-- as its last statement, so it holds the row lock only until it commits: numbers are
-- handed out in commit order, without gaps, and once number N is visible every number
-- below it is too. A reader that has seen up to N can never miss a row below N.
-- epoch names this database's sequence, so a cursor from another database (a restore,
-- a new data directory) is recognised as foreign instead of silently skipping rows.
CREATE TABLE revocation_counter (
  id boolean PRIMARY KEY DEFAULT true CHECK (id),
  epoch text NOT NULL,
  position bigint NOT NULL
);
-- The feed itself: one row per revoked session, by position. A table of its own, with
-- no foreign key: numbering touches neither the session rows again nor the users
-- (a second UPDATE of a session row would take a key-share lock on its user while
-- holding the counter, and deadlock against a login or a user removal).
CREATE TABLE revocation_feed (
  position bigint PRIMARY KEY,
  session_id uuid NOT NULL,
  revoked_at timestamptz NOT NULL
);
INSERT INTO revocation_feed (position, session_id, revoked_at)
  SELECT row_number() OVER (ORDER BY revoked_at, id), id, revoked_at FROM sessions WHERE revoked_at IS NOT NULL;
INSERT INTO revocation_counter (epoch, position)
  SELECT substr(replace(gen_random_uuid()::text, '-', ''), 1, 12), coalesce(max(position), 0) FROM revocation_feed;
-- Where the feed's horizon (revoked within one access-token lifetime) starts, and retention.
CREATE INDEX revocation_feed_revoked_at_idx ON revocation_feed (revoked_at, position);
`,
  },
  {
    version: 6,
    name: 'username skeletons: look-alike usernames are one name',
    sql: `
-- The UTS #39-style skeleton of each username (see flows/usernames.ts): a sign-up whose
-- skeleton an existing user has is refused. Filled in by the server for older rows;
-- not unique, so users who registered look-alikes before this release keep their names.
ALTER TABLE users ADD COLUMN username_skeleton text;
CREATE INDEX users_username_skeleton_idx ON users (username_skeleton);
`,
  },
  {
    version: 7,
    name: 'accounts: email and its verification, password-reset and verification tokens, who acted in the audit log',
    sql: `
-- Optional, unique regardless of case. Verified once a verification link for this very
-- address was followed: changing the address makes it unverified again.
ALTER TABLE users ADD COLUMN email text;
ALTER TABLE users ADD COLUMN email_verified_at timestamptz;
CREATE UNIQUE INDEX users_email_key ON users (lower(email));

-- Single-use tokens mailed (or handed to an operator) as links. Only a SHA-256 of the
-- token is kept: a copy of this table lets no one reset a password.
CREATE TABLE account_tokens (
  token_hash text PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  purpose text NOT NULL CHECK (purpose IN ('password_reset', 'email_verification')),
  -- The address a verification token confirms: it confirms nothing once the user changed it.
  email text,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  used_at timestamptz
);
CREATE INDEX account_tokens_user_id_idx ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expires_at_idx ON account_tokens (expires_at);

-- Who made a change on someone else's account (an admin, an operator).
ALTER TABLE audit_events ADD COLUMN actor_id uuid;
ALTER TABLE audit_events ADD COLUMN actor_username text;
`,
  },
  {
    version: 8,
    name: 'second factors: TOTP with recovery codes, the login step between password and code, passkeys, how a session signed in',
    sql: `
-- One authenticator app per user. The secret is sealed with the key-encryption key like
-- the signing keys ({"sealed": JWE}), or kept as {"plain": base32} under the data dir's mode.
-- It protects logins only once confirmed with a correct code. last_step: the highest
-- 30 s step a code was accepted for; a code for that step or an earlier one is a replay.
CREATE TABLE totp_factors (
  user_id uuid PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
  secret jsonb NOT NULL,
  created_at timestamptz NOT NULL,
  confirmed_at timestamptz,
  last_step bigint
);

-- Ten single-use codes per enrolment, stored as hashes.
CREATE TABLE recovery_codes (
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  code_hash text NOT NULL,
  used_at timestamptz,
  PRIMARY KEY (user_id, code_hash)
);

-- The step between a right password and a second factor: an opaque token (only its hash
-- here), bound to the user's password hash of that login, five minutes, one success,
-- a few failures.
CREATE TABLE mfa_challenges (
  token_hash text PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  password_hash text NOT NULL,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  failures integer NOT NULL DEFAULT 0,
  used_at timestamptz
);
CREATE INDEX mfa_challenges_expires_at_idx ON mfa_challenges (expires_at);

-- WebAuthn credentials. credential_id and public_key as the authenticator gave them
-- (base64url); counter: the signature counter, for clone detection.
CREATE TABLE passkeys (
  id uuid PRIMARY KEY,
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  credential_id text NOT NULL UNIQUE,
  public_key text NOT NULL,
  counter bigint NOT NULL DEFAULT 0,
  transports text[] NOT NULL DEFAULT '{}',
  device_type text,
  backed_up boolean NOT NULL DEFAULT false,
  name text NOT NULL,
  created_at timestamptz NOT NULL,
  last_used_at timestamptz
);
CREATE INDEX passkeys_user_id_idx ON passkeys (user_id);

-- WebAuthn challenges, server-side and single use: registration ones belong to a user,
-- login ones to nobody yet (discoverable credentials) or to the user named.
CREATE TABLE webauthn_challenges (
  challenge text PRIMARY KEY,
  purpose text NOT NULL CHECK (purpose IN ('registration', 'authentication')),
  user_id uuid REFERENCES users (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL
);
CREATE INDEX webauthn_challenges_expires_at_idx ON webauthn_challenges (expires_at);

-- How the session signed in (RFC 8176 amr: pwd; pwd + otp; hwk): kept so every
-- refreshed access token says the same.
ALTER TABLE sessions ADD COLUMN amr text[] NOT NULL DEFAULT '{pwd}';
`,
  },
  {
    version: 9,
    name: 'sessions bound to a key (DPoP, RFC 9449)',
    sql: `
-- The RFC 7638 thumbprint of the key a session's tokens are bound to: every refresh
-- needs a proof signed by it. NULL for bearer sessions.
ALTER TABLE sessions ADD COLUMN dpop_jkt text;
`,
  },
  {
    version: 10,
    name: 'second-factor lockout, passkey login options for a name',
    sql: `
-- Wrong codes at the login step since the last right one, across every mfa_token:
-- past a bound the authenticator app is locked until a recovery code or a new password.
ALTER TABLE totp_factors ADD COLUMN failures integer NOT NULL DEFAULT 0;

-- Login options asked for a username: only that account's passkeys may answer them,
-- even when the name is unknown (user_id NULL), so that answering with another
-- account's passkey cannot tell which names exist.
ALTER TABLE webauthn_challenges ADD COLUMN named boolean NOT NULL DEFAULT false;
`,
  },
  {
    version: 11,
    name: 'server secrets shared by every instance',
    sql: `
-- Secrets every instance must agree on, made once by the first to need one (the
-- DPoP nonce key). Not signing keys: a leak lets nobody sign or read anything.
CREATE TABLE server_secrets (
  name text PRIMARY KEY,
  value bytea NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
`,
  },
];

/** An arbitrary constant: the advisory lock that serialises migrations across instances. */
const MIGRATION_LOCK = 0x7e55e7a;

/** Applies the migrations not yet applied; safe when several instances start at once. */
export async function migrate(db: Database): Promise<{ applied: number[] }> {
  return db.transaction(async (tx) => {
    // Lock first: two instances starting together must not both create the table.
    await tx.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK]);
    await tx.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())',
    );
    const done = await tx.query<{ version: number }>('SELECT version FROM schema_migrations');
    const have = new Set(done.rows.map((r) => r.version));
    const applied: number[] = [];
    for (const migration of MIGRATIONS) {
      if (have.has(migration.version)) continue;
      for (const statement of splitStatements(migration.sql)) await tx.query(statement);
      await tx.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [
        migration.version,
        migration.name,
      ]);
      applied.push(migration.version);
    }
    return { applied };
  });
}

/** The versions applied to `db`, and those this release has that are not (pending). */
export async function migrationState(db: Queryable): Promise<{ applied: number[]; pending: number[] }> {
  const exists = await db.query<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t");
  const applied = exists.rows[0]?.t ? (await db.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version')).rows.map((r) => r.version) : [];
  return { applied, pending: MIGRATIONS.map((m) => m.version).filter((v) => !applied.includes(v)) };
}

// Statements go one by one through the parameterised path, which both drivers
// run inside the transaction. Our migrations hold no semicolons in literals.
function splitStatements(sql: string): string[] {
  return sql
    .split(/;\s*$/m)
    .map((s) => s.replace(/^\s*--.*$/gm, '').trim())
    .filter((s) => s.length > 0);
}
