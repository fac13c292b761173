import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { TesseraError } from '@tessera/protocol';
import { createDatabase, type PostgresServer, startPostgres } from '../../../../test/support/postgres_server.js';
import type { Database } from './database.js';
import { MIGRATIONS, migrate } from './migrations.js';
import { openPgliteDatabase } from './pglite_database.js';
import { openPostgresDatabase } from './postgres_database.js';
import type { AuditEntry, NewAccountToken, UserRecord } from './records.js';
import { Store } from './store.js';

/** Emails, roles and single-use account tokens, on PGlite and on a real PostgreSQL. */
function accountSuite(driver: string, open: () => Promise<Database>) {
  describe(`accounts on ${driver}`, () => {
    let store: Store;
    const audited: AuditEntry[] = [];
    const t0 = new Date(Date.UTC(2030, 0, 1));
    const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
    const client = { ip: '203.0.113.9', userAgent: 'accounts-test' };

    before(async () => {
      const db = await open();
      await migrate(db);
      store = new Store(db, (entry) => audited.push(entry));
    });
    after(() => store?.close());

    const name = () => `a${randomUUID().slice(0, 8)}`;
    async function newUser(email?: string): Promise<UserRecord> {
      const username = name();
      return store.users.create({ id: randomUUID(), username, skeleton: username, passwordHash: 'old-hash', roles: [], now: t0, ...(email ? { email } : {}) }, client);
    }
    const resetToken = (expiresIn = 1800): NewAccountToken => ({ tokenHash: randomUUID(), purpose: 'password_reset', expiresAt: at(expiresIn) });
    async function session(user: UserRecord) {
      const id = randomUUID();
      await store.sessions.open({ session: { id, user, client }, token: { jtiHash: randomUUID(), issuedAt: t0, expiresAt: at(86_400) }, single: false, now: t0 });
      return id;
    }

    test('emails are unique regardless of case: email_taken at sign-up and on change, and nothing is written', async () => {
      const first = await newUser(`Mixed.${randomUUID()}@Example.com`);
      await assert.rejects(newUser(first.email!.toLowerCase()), (e: unknown) => e instanceof TesseraError && e.code === 'email_taken');
      const other = await newUser();
      const verification: NewAccountToken = { tokenHash: randomUUID(), purpose: 'email_verification', expiresAt: at(86_400), email: first.email!.toUpperCase() };
      await assert.rejects(
        store.users.setEmail({ userId: other.id, email: first.email!.toUpperCase(), verification, now: t0, audit: client }),
        (e: unknown) => e instanceof TesseraError && e.code === 'email_taken',
      );
      assert.equal((await store.users.findById(other.id))?.email, null);
      const { rows } = await store.db.query('SELECT 1 FROM account_tokens WHERE token_hash = $1', [verification.tokenHash]);
      assert.equal(rows.length, 0, 'the failed change stored no token');
      assert.equal((await store.users.findByEmail(first.email!.toUpperCase()))?.id, first.id);
    });

    test('two redemptions of one reset token at once: exactly one wins, sessions end, the other token of the user dies', async () => {
      const user = await newUser();
      const sessions = [await session(user), await session(user)];
      const a = resetToken();
      const b = resetToken();
      await store.accountTokens.issueReset({ userId: user.id, username: user.username, token: a, now: t0, audit: client });
      await store.accountTokens.issueReset({ userId: user.id, username: user.username, token: b, now: t0, audit: client });
      const results = await Promise.all(
        Array.from({ length: 5 }, (_, i) => store.accountTokens.redeemReset({ tokenHash: a.tokenHash, passwordHash: `new-${i}`, now: at(60), client })),
      );
      const winners = results.filter((r) => r !== null);
      assert.equal(winners.length, 1);
      assert.deepEqual(winners[0]!.revoked.sort(), [...sessions].sort());
      const after = await store.users.findById(user.id);
      assert.match(after!.passwordHash, /^new-\d$/);
      assert.equal(await store.accountTokens.redeemReset({ tokenHash: b.tokenHash, passwordHash: 'again', now: at(61), client }), null, 'the sibling token died with the reset');
      assert.ok(audited.some((e) => e.event === 'password.reset' && e.userId === user.id));
      assert.ok(audited.some((e) => e.event === 'session.revoked' && e.userId === user.id && e.reason === 'password_reset'));
    });

    test('an expired, unknown or wrong-purpose token changes nothing', async () => {
      const user = await newUser();
      const live = await session(user);
      const expired = resetToken(30);
      await store.accountTokens.issueReset({ userId: user.id, username: user.username, token: expired, now: t0, audit: client });
      assert.equal(await store.accountTokens.redeemReset({ tokenHash: expired.tokenHash, passwordHash: 'x', now: at(31), client }), null);
      assert.equal(await store.accountTokens.redeemReset({ tokenHash: randomUUID(), passwordHash: 'x', now: at(1), client }), null);
      const verification: NewAccountToken = { tokenHash: randomUUID(), purpose: 'email_verification', expiresAt: at(86_400), email: `${name()}@example.com` };
      await store.users.setEmail({ userId: user.id, email: verification.email!, verification, now: t0, audit: client });
      assert.equal(await store.accountTokens.redeemReset({ tokenHash: verification.tokenHash, passwordHash: 'x', now: at(1), client }), null, 'a verification token is no reset token');
      assert.equal((await store.users.findById(user.id))?.passwordHash, 'old-hash');
      assert.equal((await store.sessions.listActive(user.id, at(1))).length, 1, `session ${live} lives`);
    });

    test('a verification token confirms only the address it was sent to, once', async () => {
      const user = await newUser();
      const first: NewAccountToken = { tokenHash: randomUUID(), purpose: 'email_verification', expiresAt: at(86_400), email: `${name()}@example.com` };
      await store.users.setEmail({ userId: user.id, email: first.email!, verification: first, now: t0, audit: client });
      const second: NewAccountToken = { tokenHash: randomUUID(), purpose: 'email_verification', expiresAt: at(86_400), email: `${name()}@example.com` };
      await store.users.setEmail({ userId: user.id, email: second.email!, verification: second, now: at(1), audit: client });
      assert.equal(await store.accountTokens.redeemVerification({ tokenHash: first.tokenHash, now: at(2), client }), null, 'the old address cannot be verified');
      const verified = await store.accountTokens.redeemVerification({ tokenHash: second.tokenHash, now: at(3), client });
      assert.equal(verified?.email, second.email);
      assert.deepEqual(verified?.emailVerifiedAt, at(3));
      assert.equal(await store.accountTokens.redeemVerification({ tokenHash: second.tokenHash, now: at(4), client }), null, 'used');
      // Setting the same address again keeps it verified; a new one is unverified.
      const same: NewAccountToken = { ...second, tokenHash: randomUUID() };
      assert.deepEqual((await store.users.setEmail({ userId: user.id, email: second.email!.toUpperCase(), verification: same, now: at(5), audit: client }))?.emailVerifiedAt, at(3));
      const other: NewAccountToken = { ...second, tokenHash: randomUUID(), email: `${name()}@example.com` };
      assert.equal((await store.users.setEmail({ userId: user.id, email: other.email!, verification: other, now: at(6), audit: client }))?.emailVerifiedAt, null);
    });

    test('roles are replaced and audited with the actor; the guard sees the locked row and can refuse', async () => {
      const user = await newUser();
      const updated = await store.users.setRoles({ user: { id: user.id }, roles: ['editor', 'admin'], now: at(1), audit: { ...client, actorId: null, actorUsername: 'boss' } });
      assert.deepEqual(updated?.roles, ['editor', 'admin']);
      const row = audited.findLast((e) => e.event === 'user.roles_changed');
      assert.equal(row?.userId, user.id);
      assert.equal(row?.actorUsername, 'boss');
      assert.match(row?.reason ?? '', /editor, admin/);
      await assert.rejects(
        store.users.setRoles({ user: { id: user.id }, roles: [], now: at(2), audit: client, guard: () => {
          throw new TesseraError('invalid_request', 'no');
        } }),
        TesseraError,
      );
      assert.deepEqual((await store.users.findById(user.id))?.roles, ['editor', 'admin'], 'refused: unchanged');
      const stored = await store.audit.list({ userId: user.id, event: 'user.roles_changed', limit: 5 });
      assert.equal(stored.length, 1);
      assert.equal(stored[0]?.actorUsername, 'boss');
    });

    test('search pages by name past a page boundary, and matches name or email in any case', async () => {
      const tag = randomUUID().slice(0, 6);
      for (let i = 0; i < 7; i++) {
        const username = `s${tag}${i}`;
        await store.users.create({ id: randomUUID(), username, skeleton: username, passwordHash: 'h', roles: [], now: t0, email: `Person${i}.${tag}@Example.org` }, client);
      }
      const seen: string[] = [];
      let after: string | undefined;
      for (;;) {
        const page = await store.users.search({ now: t0, query: tag.toUpperCase(), after, limit: 3 });
        seen.push(...page.map((u) => u.username));
        if (page.length < 3) break;
        after = page.at(-1)!.username;
      }
      assert.deepEqual(seen, Array.from({ length: 7 }, (_, i) => `s${tag}${i}`));
      assert.deepEqual((await store.users.search({ now: t0, query: `person3.${tag}@example`, limit: 10 })).map((u) => u.username), [`s${tag}3`]);
      assert.deepEqual(await store.users.search({ now: t0, query: '%', limit: 10 }), [], 'LIKE wildcards are literal');
    });
  });
}

accountSuite('PGlite', () => openPgliteDatabase(undefined));

let postgres: PostgresServer | undefined;
after(() => postgres?.stop());
accountSuite('PostgreSQL', async () => {
  postgres = await startPostgres();
  return openPostgresDatabase({ url: await createDatabase(postgres.url, 'accounts_suite') });
});

test('migration 7 upgrades a database as version 6 left it: users keep everything, gain an empty email', async () => {
  const old = await openPgliteDatabase(undefined);
  try {
    await old.exec('CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    for (const m of MIGRATIONS.filter((m) => m.version <= 6)) {
      await old.exec(m.sql);
      await old.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
    }
    const t0 = new Date(Date.UTC(2030, 0, 1));
    const id = randomUUID();
    await old.query(`INSERT INTO users (id, username, username_skeleton, password_hash, roles, created_at, updated_at) VALUES ($1, 'veteran', 'veteran', 'h', '{admin}', $2, $2)`, [id, t0]);
    await old.query(`INSERT INTO audit_events (at, event, user_id, username, outcome) VALUES ($1, 'user.registered', $2, 'veteran', 'success')`, [t0, id]);

    assert.deepEqual(await migrate(old), { applied: MIGRATIONS.filter((m) => m.version > 6).map((m) => m.version) });
    const store = new Store(old);
    const user = await store.users.findById(id);
    assert.deepEqual({ username: user?.username, roles: user?.roles, email: user?.email, verified: user?.emailVerifiedAt }, { username: 'veteran', roles: ['admin'], email: null, verified: null });
    const [event] = await store.audit.list({ userId: id, limit: 1 });
    assert.equal(event?.actorId, null);
    assert.equal(event?.event, 'user.registered');
    // The new table works on the upgraded schema.
    await store.accountTokens.issueReset({ userId: id, username: 'veteran', token: { tokenHash: 'h1', purpose: 'password_reset', expiresAt: new Date(t0.getTime() + 60_000) }, now: t0, audit: { ip: null, userAgent: null } });
    assert.ok(await store.accountTokens.redeemReset({ tokenHash: 'h1', passwordHash: 'h2', now: t0, client: { ip: null, userAgent: null } }));
  } finally {
    await old.close();
  }
});
