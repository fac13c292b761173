import assert from 'node:assert/strict';
import { test } from 'node:test';
import { signUp, startTestServer } from '../../../test/support/test_server.js';
import { createAuthServer } from './server.js';

test('retention deletes audit events and ended sessions older than --retention, and keeps the rest', async () => {
  const t = await startTestServer({ retention: '30d' });
  try {
    const db = t.server.context.store.db;
    const { username, password, pair: ended } = await signUp(t); // user.registered, login.succeeded at day 0
    assert.equal((await t.call('POST', '/auth/logout', { token: ended.access_token })).status, 204); // revoked at day 0
    const live = await t.call('POST', '/auth/login', { body: { username, password } }); // expires at day 30
    t.clock.advance(31 * 86_400);
    const fresh = await t.call('POST', '/auth/login', { body: { username, password } }); // day 31
    const day0Events = await db.query('SELECT 1 FROM audit_events WHERE at < $1', [new Date(t.clock.now() - 30 * 86_400_000)]);
    assert.ok(day0Events.rows.length >= 3);

    const deleted = await t.server.prune();
    assert.equal(deleted.sessions, 1, 'only the session that ended 31 days ago');
    assert.equal(deleted.auditEvents, day0Events.rows.length);
    const sessions = await db.query<{ id: string }>('SELECT id FROM sessions');
    const ids = sessions.rows.map((r) => r.id).sort();
    assert.deepEqual(ids, [live.body.session_id, fresh.body.session_id].sort(), 'the session that expired a day ago (within 30 d) and the live one stay');
    const left = await db.query<{ event: string }>('SELECT event FROM audit_events');
    assert.deepEqual(left.rows.map((r) => r.event), ['login.succeeded'], 'the day-31 login is kept');
    assert.deepEqual(await t.server.prune(), { auditEvents: 0, sessions: 0 }, 'running again deletes nothing');
    // The user's own view still works on what is left.
    assert.equal((await t.call('GET', '/auth/audit', { token: fresh.body.access_token })).body.events.length, 1);
  } finally {
    await t.close();
  }
});

test('retention "forever" deletes nothing; a retention shorter than a day or than the access-token lifetime is refused', async () => {
  const t = await startTestServer({ retention: 'forever' });
  try {
    await signUp(t);
    t.clock.advance(400 * 86_400);
    assert.deepEqual(await t.server.prune(), { auditEvents: 0, sessions: 0 });
  } finally {
    await t.close();
  }
  await assert.rejects(createAuthServer({ dataDir: 'memory://', log: false, retention: '1h' }), TypeError);
  await assert.rejects(createAuthServer({ dataDir: 'memory://', log: false, retention: '1d', accessTtl: '2d' }), TypeError);
});
