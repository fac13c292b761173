import assert from 'node:assert/strict';
import { test } from 'node:test';
import { captureLogs } from '../../../test/support/log_capture.js';
import { signUp, startTestServer } from '../../../test/support/test_server.js';
import { runAdminOperation } from './operations.js';

/** The contract's list of audit events. */
const EVENTS = [
  'user.registered',
  'login.succeeded',
  'login.failed',
  'token.refreshed',
  'token.reused',
  'session.revoked',
  'password.changed',
  'user.disabled',
  'user.enabled',
  'user.removed',
  'key.rotated',
  'key.retired',
  'rate_limited',
] as const;

test('every audit event of the contract is written, as a row and a JSON log line, with its fields and no secret', async () => {
  const logs = captureLogs();
  const t = await startTestServer({ rateLimit: 'ip=1000/1m,user=2/1m', log: 'info', logStream: logs.stream });
  try {
    const ctx = t.server.context;
    const host = { ...ctx, keys: ctx.keys };
    const { username, password, pair } = await signUp(t);
    await t.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } });
    await t.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } });
    await t.call('POST', '/auth/login', { body: { username, password } }); // rate_limited
    const refreshed = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    t.clock.advance(11);
    await t.call('POST', '/auth/refresh', { token: pair.refresh_token }); // token.reused + session.revoked
    t.clock.advance(61);
    const second = await t.call('POST', '/auth/login', { body: { username, password } });
    await t.call('POST', '/auth/login', { body: { username, password } }); // another device, ended by the password change
    await t.call('POST', '/auth/password', { token: second.body.access_token, body: { current_password: password, new_password: 'the next password' } });
    await runAdminOperation(host, { op: 'user.disable', username });
    await runAdminOperation(host, { op: 'user.enable', username });
    const rotated = (await runAdminOperation(host, { op: 'keys.rotate' })) as { kid: string };
    await runAdminOperation(host, { op: 'keys.retire', kid: rotated.kid });
    await runAdminOperation(host, { op: 'user.remove', username });

    const rows = await ctx.store.audit.list({ limit: 1000 });
    for (const event of EVENTS) assert.ok(rows.some((r) => r.event === event), `audit row for ${event}`);
    for (const row of rows) {
      assert.ok(row.at instanceof Date && row.outcome.length > 0);
      if (row.event.startsWith('user.') || row.event.startsWith('login.') || row.event === 'password.changed') {
        assert.ok(row.userId || row.reason === 'unknown_user', `${row.event} names the user`);
      }
    }
    const failed = rows.filter((r) => r.event === 'login.failed');
    assert.ok(failed.every((r) => r.reason === 'wrong_password'));
    const reused = rows.find((r) => r.event === 'token.reused')!;
    assert.equal(reused.sessionId, pair.session_id, 'the reuse names the session it revoked');
    const reasons = new Set(rows.filter((r) => r.event === 'session.revoked').map((r) => r.reason));
    for (const reason of ['token_reused', 'password_changed', 'user_disabled']) assert.ok(reasons.has(reason), `session.revoked because ${reason}`);
    assert.equal(rows.filter((r) => r.event === 'user.removed').length, 1, 'once');

    const logged = logs.text();
    for (const event of EVENTS) assert.ok(logged.includes(`"event":"${event}"`), `log line for ${event}`);
    const everything = logged + JSON.stringify(rows);
    for (const secret of [password, 'wrong password!!', 'the next password', pair.refresh_token, pair.access_token, refreshed.body.refresh_token, '$argon2id$']) {
      assert.ok(!everything.includes(secret), 'no secret in the audit rows or the log');
    }
  } finally {
    await t.close();
  }
});

test('a logout names its user in the audit row, with an access token or a refresh token, so an audit search by username finds it', async () => {
  const t = await startTestServer();
  try {
    const a = await signUp(t);
    const second = await t.call('POST', '/auth/login', { body: { username: a.username, password: a.password } });
    assert.equal((await t.call('POST', '/auth/logout', { token: a.pair.access_token })).status, 204);
    assert.equal((await t.call('POST', '/auth/logout', { token: second.body.refresh_token })).status, 204);
    const rows = await t.server.context.store.audit.list({ username: a.username, event: 'session.revoked', limit: 10 });
    assert.deepEqual(rows.map((r) => r.sessionId).sort(), [a.pair.session_id, second.body.session_id].sort());
  } finally {
    await t.close();
  }
});
