import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { TesseraError } from '@tessera/protocol';
import { createDatabase, type PostgresServer, startPostgres } from '../../../../test/support/postgres_server.js';
import { decideRotation } from '../flows/refresh_rotation.js';
import type { Database } from './database.js';
import { MIGRATIONS, migrate } from './migrations.js';
import { openPgliteDatabase } from './pglite_database.js';
import { openPostgresDatabase } from './postgres_database.js';
import type { AuditEntry, UserRecord } from './records.js';
import { type NewRefreshToken, Store } from './store.js';

/**
 * One behavioural suite for the store, run against the embedded PGlite and a
 * real PostgreSQL 15 server: the same SQL must behave the same on both.
 */
function storeSuite(driver: string, open: () => Promise<Database>) {
  describe(`Store on ${driver}`, () => {
    let store: Store;
    let db: Database;
    const audited: AuditEntry[] = [];
    const t0 = new Date(Date.UTC(2030, 0, 1));
    const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
    const client = { ip: '203.0.113.7', userAgent: 'store-test' };

    before(async () => {
      db = await open();
      await migrate(db);
      store = new Store(db, (entry) => audited.push(entry));
    });
    after(() => store?.close());

    async function newUser(name = `u${randomUUID().slice(0, 8)}`): Promise<UserRecord> {
      return store.users.create({ id: randomUUID(), username: name, skeleton: name.toLowerCase(), passwordHash: 'argon2-hash', roles: ['reader'], now: t0 }, client);
    }
    const token = (issued: number, ttl = 3600): NewRefreshToken => ({
      jtiHash: randomUUID(),
      issuedAt: at(issued),
      expiresAt: at(issued + ttl),
    });
    async function newSession(user: UserRecord, first = token(0)) {
      const id = randomUUID();
      await store.sessions.open({ session: { id, user, client }, token: first, single: false, now: first.issuedAt });
      return { id, first };
    }

    test('migrations are versioned and applying them twice changes nothing', async () => {
      assert.deepEqual(await migrate(store.db), { applied: [] });
      const { rows } = await store.db.query<{ version: number }>('SELECT version FROM schema_migrations ORDER BY version');
      assert.deepEqual(rows.map((r) => r.version), MIGRATIONS.map((m) => m.version));
    });

    test('usernames are unique regardless of case; the second gets username_taken and nothing is written', async () => {
      const user = await newUser('CaseUser');
      await assert.rejects(newUser('caseuser'), (e: unknown) => e instanceof TesseraError && e.code === 'username_taken');
      assert.equal((await store.users.findByUsername('CASEUSER'))?.id, user.id);
      const { rows } = await store.db.query("SELECT 1 FROM users WHERE lower(username) = 'caseuser'");
      assert.equal(rows.length, 1);
      assert.deepEqual(user.roles, ['reader']);
    });

    test('a rotation makes the successor current, keeps the parent as the previous link, and stores hashes only', async () => {
      const user = await newUser();
      const { id, first } = await newSession(user);
      assert.deepEqual(await store.sessions.refreshState(id), { sessionId: id, currentHash: first.jtiHash, issuedAt: first.issuedAt, expiresAt: first.expiresAt, previousHash: null, rotatedAt: null });
      const next = token(60);
      const outcome = await store.sessions.rotate({ sessionId: id, jtiHash: first.jtiHash, successor: next, now: at(60), graceMs: 10_000, client, decide: decideRotation });
      assert.equal(outcome.kind, 'rotated');
      const state = await store.sessions.refreshState(id);
      assert.equal(state?.currentHash, next.jtiHash);
      assert.equal(state?.previousHash, first.jtiHash);
      assert.deepEqual(state?.rotatedAt, at(60));
      assert.ok(audited.some((e) => e.event === 'token.refreshed' && e.sessionId === id), 'the one-statement path writes its audit row too');
      const { rows } = await store.db.query<{ n: string }>("SELECT count(*)::text AS n FROM audit_events WHERE session_id = $1 AND event = 'token.refreshed'", [id]);
      assert.equal(rows[0]?.n, '1');
      const columns = await store.db.query<{ column_name: string }>(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'sessions'",
      );
      assert.ok(!columns.rows.some((c) => /^(token|jti|refresh_token)$/.test(c.column_name)), 'no raw token or jti column');
    });

    test('a password-only session is not opened once an authenticator app guards the account (confirmed while the password was checked); with the second factor it is', async () => {
      for (const single of [false, true]) {
        const user = await newUser();
        await store.secondFactors.startTotp({ userId: user.id, secret: { base32: 'JBSWY3DPEHPK3PXP' }, now: t0 });
        const open = (amr: string[]) => store.sessions.open({ session: { id: randomUUID(), user, client, amr }, token: token(1), single, now: at(1) });
        assert.deepEqual(await open(['pwd']), { opened: true, revoked: [] }, 'an unconfirmed enrolment does not guard yet');
        await store.secondFactors.confirmTotp({ user, recoveryCodeHashes: [], now: at(2), audit: client });
        assert.deepEqual(await open(['pwd']), { opened: false }, `single=${single}`);
        assert.equal((await open(['pwd', 'otp'])).opened, true, `single=${single}`);
        assert.equal((await open(['hwk'])).opened, true, `single=${single}`);
      }
    });

    test('within the grace window the parent gets the same successor back; after it, reuse revokes the session', async () => {
      const user = await newUser();
      const { id, first } = await newSession(user);
      const next = token(10);
      await store.sessions.rotate({ sessionId: id, jtiHash: first.jtiHash, successor: next, now: at(10), graceMs: 10_000, client, decide: decideRotation });
      const replay = await store.sessions.rotate({ sessionId: id, jtiHash: first.jtiHash, successor: token(15), now: at(15), graceMs: 10_000, client, decide: decideRotation });
      assert.equal(replay.kind, 'replayed');
      assert.equal(replay.kind === 'replayed' && replay.successor.jtiHash, next.jtiHash);
      assert.equal((await store.sessions.refreshState(id))?.currentHash, next.jtiHash, 'a replay changes nothing');

      const late = await store.sessions.rotate({ sessionId: id, jtiHash: first.jtiHash, successor: token(21), now: at(21), graceMs: 10_000, client, decide: decideRotation });
      assert.equal(late.kind, 'reused');
      const state = await store.sessions.findWithUser(id);
      assert.equal(state?.session.revokedReason, 'token_reused');
      const afterwards = await store.sessions.rotate({ sessionId: id, jtiHash: next.jtiHash, successor: token(22), now: at(22), graceMs: 10_000, client, decide: decideRotation });
      assert.equal(afterwards.kind, 'revoked', 'the successor dies with the family');
      assert.ok(audited.some((e) => e.event === 'token.reused' && e.sessionId === id));
    });

    test('a grandparent is reuse at any time, even inside the grace window', async () => {
      const user = await newUser();
      const { id, first } = await newSession(user);
      const b = token(1);
      await store.sessions.rotate({ sessionId: id, jtiHash: first.jtiHash, successor: b, now: at(1), graceMs: 60_000, client, decide: decideRotation });
      await store.sessions.rotate({ sessionId: id, jtiHash: b.jtiHash, successor: token(2), now: at(2), graceMs: 60_000, client, decide: decideRotation });
      const outcome = await store.sessions.rotate({ sessionId: id, jtiHash: first.jtiHash, successor: token(3), now: at(3), graceMs: 60_000, client, decide: decideRotation });
      assert.equal(outcome.kind, 'reused');
    });

    test('20 parallel rotations of one token make exactly one successor', async () => {
      const user = await newUser();
      const { id, first } = await newSession(user);
      const outcomes = await Promise.all(
        Array.from({ length: 20 }, (_, i) =>
          store.sessions.rotate({ sessionId: id, jtiHash: first.jtiHash, successor: token(5), now: at(5 + i / 100), graceMs: 10_000, client, decide: decideRotation }),
        ),
      );
      assert.equal(outcomes.filter((o) => o.kind === 'rotated').length, 1);
      assert.equal(outcomes.filter((o) => o.kind === 'replayed').length, 19);
      const successors = new Set(outcomes.map((o) => (o.kind === 'rotated' || o.kind === 'replayed' ? o.successor.jtiHash : o.kind)));
      assert.equal(successors.size, 1, 'one lineage');
      assert.equal((await store.sessions.refreshState(id))?.previousHash, first.jtiHash, 'rotated exactly once');
    });

    test('unknown sessions, foreign links, expired and disabled-user tokens are refused; a disabled user loses the session', async () => {
      const user = await newUser();
      const { id, first } = await newSession(user, token(0, 100));
      assert.equal((await store.sessions.rotate({ sessionId: randomUUID(), jtiHash: first.jtiHash, successor: token(1), now: at(1), graceMs: 0, client, decide: decideRotation })).kind, 'unknown');
      assert.equal((await store.sessions.rotate({ sessionId: id, jtiHash: first.jtiHash, successor: token(101), now: at(101), graceMs: 0, client, decide: decideRotation })).kind, 'expired');
      // A signed token of this session that is neither its current one nor the one
      // just replaced is an old link of the chain: reuse, and the session ends.
      const live = await newSession(user);
      assert.equal((await store.sessions.rotate({ sessionId: live.id, jtiHash: 'not-a-link', successor: token(1), now: at(1), graceMs: 10_000, client, decide: decideRotation })).kind, 'reused');
      assert.equal((await store.sessions.findWithUser(live.id))?.session.revokedReason, 'token_reused');

      const other = await newUser();
      const s = await newSession(other);
      await store.db.query('UPDATE users SET disabled_at = $2 WHERE id = $1', [other.id, t0]);
      assert.equal((await store.sessions.rotate({ sessionId: s.id, jtiHash: s.first.jtiHash, successor: token(1), now: at(1), graceMs: 0, client, decide: decideRotation })).kind, 'revoked');
      assert.equal((await store.sessions.findWithUser(s.id))?.session.revokedReason, 'user_disabled');
    });

    test('a rotation re-reads the user: a changed role is in the outcome', async () => {
      const user = await newUser();
      const { id, first } = await newSession(user);
      await store.db.query("UPDATE users SET roles = '{admin}' WHERE id = $1", [user.id]);
      const outcome = await store.sessions.rotate({ sessionId: id, jtiHash: first.jtiHash, successor: token(1), now: at(1), graceMs: 0, client, decide: decideRotation });
      assert.equal(outcome.kind, 'rotated');
      assert.deepEqual(outcome.kind === 'rotated' && outcome.user.roles, ['admin']);
    });

    test('revoking: one session (only the owner can), all of a user, and a password change keeps the current one', async () => {
      const user = await newUser();
      const stranger = await newUser();
      const a = await newSession(user);
      const b = await newSession(user);
      const c = await newSession(user);
      assert.equal(await store.sessions.revoke({ sessionId: a.id, userId: stranger.id, reason: 'logout', now: at(1), audit: {} }), false);
      assert.equal(await store.sessions.revoke({ sessionId: a.id, userId: user.id, reason: 'logout', now: at(1), audit: {} }), true);
      assert.equal(await store.sessions.revoke({ sessionId: a.id, userId: user.id, reason: 'logout', now: at(2), audit: {} }), false, 'already over');
      const { revoked } = await store.users.changePassword({ userId: user.id, username: user.username, passwordHash: 'new-hash', expectedHash: user.passwordHash, keepSessionId: c.id, now: at(3), client });
      assert.deepEqual(revoked, [b.id]);
      assert.deepEqual((await store.sessions.listActive(user.id, at(4))).map((s) => s.id), [c.id]);
      assert.equal((await store.users.findById(user.id))?.passwordHash, 'new-hash');
      assert.deepEqual(await store.sessions.revokeAllOfUser({ userId: user.id, reason: 'logout_all', now: at(5), audit: {} }), [c.id]);
      assert.deepEqual(await store.sessions.listActive(user.id, at(6)), []);
    });

    test('a password change loses to a reset or an operator that got there first, and to the end of its own session', async () => {
      const user = await newUser();
      const mine = await newSession(user);
      await store.users.setPassword({ user: { id: user.id }, passwordHash: 'reset-hash', now: at(1), audit: {} });
      await assert.rejects(
        store.users.changePassword({ userId: user.id, username: user.username, passwordHash: 'late-hash', expectedHash: user.passwordHash, keepSessionId: mine.id, now: at(2), client }),
        (error: unknown) => error instanceof TesseraError && error.code === 'invalid_credentials',
      );
      assert.equal((await store.users.findById(user.id))?.passwordHash, 'reset-hash', 'the reset stands');
      await assert.rejects(
        store.users.changePassword({ userId: user.id, username: user.username, passwordHash: 'late-hash', expectedHash: 'reset-hash', keepSessionId: mine.id, now: at(3), client }),
        (error: unknown) => error instanceof TesseraError && error.code === 'token_revoked',
        'the reset ended the session that asked',
      );
      assert.equal((await store.users.findById(user.id))?.passwordHash, 'reset-hash', 'nothing changed');
    });

    test('admin changes: two admins demoting each other at once cannot both win, and the last enabled admin stays', async () => {
      const a = await newUser();
      const b = await newUser();
      for (const u of [a, b]) await store.users.setRoles({ user: { id: u.id }, roles: ['admin'], now: at(1), audit: {} });
      // Every other admin out of the way, so that a and b are the only ones.
      await db.query(`UPDATE users SET roles = array_remove(roles, 'admin') WHERE id <> ALL($1::uuid[])`, [[a.id, b.id]]);
      const results = await Promise.allSettled([
        store.users.setRoles({ user: { id: b.id }, roles: [], now: at(2), audit: {}, admin: { actorId: a.id, role: 'admin' } }),
        store.users.setRoles({ user: { id: a.id }, roles: [], now: at(2), audit: {}, admin: { actorId: b.id, role: 'admin' } }),
      ]);
      assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, JSON.stringify(results.map((r) => r.status)));
      const refused = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      assert.equal((refused.reason as TesseraError).code, 'forbidden', 'the loser is no admin any more when its turn comes');
      const left = await db.query<{ id: string }>(`SELECT id FROM users WHERE 'admin' = ANY(roles) AND disabled_at IS NULL`);
      assert.equal(left.rows.length, 1);
      const last = left.rows[0]!.id;
      for (const change of [
        () => store.users.setDisabled({ user: { id: last }, disabled: true, now: at(3), audit: {}, admin: { actorId: last, role: 'admin' } }),
        () => store.users.setRoles({ user: { id: last }, roles: ['reader'], now: at(3), audit: {}, admin: { actorId: last, role: 'admin' } }),
        () => store.users.remove({ user: { id: last }, now: at(3), audit: {}, admin: { actorId: last, role: 'admin' } }),
      ]) {
        await assert.rejects(change(), (error: unknown) => error instanceof TesseraError && error.code === 'invalid_request');
      }
      assert.ok(await store.users.findById(last), 'still there, still an admin');
      assert.equal((await db.query(`SELECT 1 FROM users WHERE id = $1 AND 'admin' = ANY(roles) AND disabled_at IS NULL`, [last])).rows.length, 1);
    });

    test('single-session policy ends the other sessions in the login transaction', async () => {
      const user = await newUser();
      const a = await newSession(user);
      const opened = await store.sessions.open({ session: { id: randomUUID(), user, client }, token: token(1), single: true, now: at(1) });
      assert.ok(opened.opened);
      assert.deepEqual(opened.revoked, [a.id]);
      assert.equal((await store.sessions.findWithUser(a.id))?.session.revokedReason, 'policy_single');
    });

    test('audit rows are written with the change and page newest first', async () => {
      const user = await newUser();
      for (let i = 0; i < 3; i++) await newSession(user);
      const first = await store.audit.list({ userId: user.id, limit: 2 });
      assert.deepEqual(first.map((e) => e.event), ['login.succeeded', 'login.succeeded']);
      const rest = await store.audit.list({ userId: user.id, limit: 10, before: first[1]!.id });
      assert.deepEqual(rest.map((e) => e.event), ['login.succeeded', 'user.registered']);
      assert.ok(rest.every((e) => e.ip === client.ip));
    });

    test('instances starting together agree on one signing key', async () => {
      let generated = 0;
      const generate = async () => {
        generated += 1;
        return { kid: `kid-${randomUUID()}`, alg: 'ES256', publicJwk: { kty: 'EC' }, privateJwk: { kty: 'EC', d: 'x' } };
      };
      const keys = await Promise.all([store.keys.ensure('ES256', t0, generate), store.keys.ensure('ES256', t0, generate)]);
      assert.equal(keys[0].kid, keys[1].kid);
      assert.equal(generated, 1);
    });
  });
}

storeSuite('PGlite', () => openPgliteDatabase(undefined));

let postgres: PostgresServer | undefined;
after(() => postgres?.stop());
storeSuite('PostgreSQL', async () => {
  postgres = await startPostgres();
  return openPostgresDatabase({ url: await createDatabase(postgres.url, 'store_suite') });
});

describe('a login that raced a password change gets no session', () => {
  test('createSession refuses a user record whose password hash is stale, or a disabled user', async () => {
    const db = await openPgliteDatabase(undefined);
    await migrate(db);
    const store = new Store(db);
    try {
      const now = new Date();
      const client = { ip: null, userAgent: null };
      const user = await store.users.create({ id: randomUUID(), username: 'racer', skeleton: 'racer', passwordHash: 'old-hash', roles: [], now }, client);
      await store.users.setPassword({ user: { id: user.id }, passwordHash: 'new-hash', now, audit: client });
      const stale = await store.sessions.open({
        session: { id: randomUUID(), user, client },
        token: { jtiHash: randomUUID(), issuedAt: now, expiresAt: new Date(now.getTime() + 60_000) },
        single: false,
        now,
      });
      assert.deepEqual(stale, { opened: false });
      assert.deepEqual(await store.sessions.listActive(user.id, now), []);
    } finally {
      await store.close();
    }
  });

  test('on PostgreSQL, a login waiting on a password change in flight opens nothing once it commits', async () => {
    const server = await startPostgres();
    const url = await createDatabase(server.url, 'login_race');
    const db = await openPostgresDatabase({ url });
    const pg = (await import('pg')).default;
    const other = new pg.Client({ connectionString: url });
    try {
      await migrate(db);
      const store = new Store(db);
      const now = new Date();
      const client = { ip: null, userAgent: null };
      const user = await store.users.create({ id: randomUUID(), username: 'racer', skeleton: 'racer', passwordHash: 'old-hash', roles: [], now }, client);
      await other.connect();
      await other.query('BEGIN');
      await other.query("UPDATE users SET password_hash = 'new-hash' WHERE id = $1", [user.id]);
      let settled = false;
      const login = store.sessions
        .open({ session: { id: randomUUID(), user, client }, token: { jtiHash: randomUUID(), issuedAt: now, expiresAt: new Date(now.getTime() + 60_000) }, single: false, now })
        .finally(() => {
          settled = true;
        });
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(settled, false, 'the login waits for the password change');
      await other.query('COMMIT');
      assert.deepEqual(await login, { opened: false });
      assert.deepEqual(await store.sessions.listActive(user.id, now), []);
    } finally {
      await other.end().catch(() => {});
      await db.close();
      await server.stop();
    }
  });
});

test('migration 3 moves each live chain onto its session row: the current token rotates, the one before replays, older ones are reuse', async () => {
  const db = await openPgliteDatabase(undefined);
  try {
    // A database as version 2 left it, with a session rotated twice (a -> b -> c).
    await db.exec('CREATE TABLE schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())');
    for (const m of MIGRATIONS.filter((m) => m.version <= 2)) {
      await db.exec(m.sql);
      await db.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [m.version, m.name]);
    }
    const t0 = new Date(Date.UTC(2030, 0, 1));
    const at = (s: number) => new Date(t0.getTime() + s * 1000);
    const userId = randomUUID();
    const sessionId = randomUUID();
    await db.query(`INSERT INTO users (id, username, password_hash, created_at, updated_at) VALUES ($1, 'old', 'h', $2, $2)`, [userId, t0]);
    await db.query(`INSERT INTO sessions (id, user_id, created_at, last_used_at, expires_at) VALUES ($1, $2, $3, $3, $4)`, [sessionId, userId, t0, at(86_400)]);
    const insert = (hash: string, parent: string | null, issued: number, used: number | null) =>
      db.query('INSERT INTO refresh_tokens (jti_hash, session_id, parent_hash, issued_at, expires_at, used_at) VALUES ($1, $2, $3, $4, $5, $6)', [
        hash, sessionId, parent, at(issued), at(86_400), used === null ? null : at(used),
      ]);
    await insert('a', null, 0, 10);
    await insert('b', 'a', 10, 20);
    await insert('c', 'b', 20, null);

    assert.deepEqual(await migrate(db), { applied: MIGRATIONS.filter((m) => m.version > 2).map((m) => m.version) });
    const store = new Store(db);
    assert.deepEqual(await store.sessions.refreshState(sessionId), { sessionId, currentHash: 'c', issuedAt: at(20), expiresAt: at(86_400), previousHash: 'b', rotatedAt: at(20) });
    const client = { ip: null, userAgent: null };
    const rotate = (hash: string, now: number) =>
      store.sessions.rotate({ sessionId, jtiHash: hash, successor: { jtiHash: `${hash}+1`, issuedAt: at(now), expiresAt: at(now + 3600) }, now: at(now), graceMs: 10_000, client, decide: decideRotation });
    assert.equal((await rotate('b', 25)).kind, 'replayed', 'the token replaced 5 s before the upgrade still replays');
    assert.equal((await rotate('c', 26)).kind, 'rotated');
    assert.equal((await rotate('a', 27)).kind, 'reused', 'an old link is still reuse');
  } finally {
    await db.close();
  }
});
