import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { signUp, startTestServer, type TestServer, uniqueName } from '../../../test/support/test_server.js';
import { OPERATOR } from './flows/actors.js';
import { addUser } from './flows/user_administration.js';

const PASSWORD = 'correct horse battery';

describe('the admin API', () => {
  let t: TestServer;
  let admin: { id: string; username: string; token: string };

  before(async () => {
    t = await startTestServer({ publicUrl: 'https://app.example.test' });
    const username = uniqueName('admin');
    const user = await addUser(t.server.context, { username, password: PASSWORD, roles: ['admin'], actor: OPERATOR });
    const login = await t.call('POST', '/auth/login', { body: { username, password: PASSWORD } });
    admin = { id: user.id, username, token: login.body.access_token };
  });
  after(() => t?.close());

  const call = (method: string, path: string, body?: unknown, token = admin.token) => t.call(method, path, { token, ...(body === undefined ? {} : { body }) });

  test('every admin route: 401 without a token, 403 forbidden for a user without the role admin, and nothing changes', async () => {
    const victim = await signUp(t);
    const plain = await signUp(t);
    const routes: [string, string, unknown?][] = [
      ['GET', '/admin/users'],
      ['GET', `/admin/users/${victim.userId}`],
      ['PATCH', `/admin/users/${victim.userId}`, { roles: ['admin'] }],
      ['POST', `/admin/users/${victim.userId}/password-reset`],
      ['DELETE', `/admin/users/${victim.userId}/sessions`],
      ['GET', '/admin/audit'],
    ];
    for (const [method, path, body] of routes) {
      const anonymous = await t.call(method, path, body === undefined ? {} : { body });
      assert.equal(anonymous.status, 401, `${method} ${path}`);
      assert.match(anonymous.headers.get('www-authenticate') ?? '', /^Bearer error="invalid_token"/);
      const refused = await call(method, path, body, plain.pair.access_token);
      assert.equal(refused.status, 403, `${method} ${path}`);
      assert.deepEqual(refused.body, { error: 'forbidden', message: refused.body.message });
    }
    assert.deepEqual((await t.server.context.store.users.findById(victim.userId))?.roles, []);
    assert.equal((await t.server.context.store.sessions.listActive(victim.userId, new Date(t.clock.now()))).length, 1);
    // A token that says admin is not enough: the role is read from the database.
    const forged = await call('GET', '/admin/users', undefined, victim.pair.refresh_token);
    assert.equal(forged.status, 401);
  });

  test('users page by name past the 200 limit, with a cursor, and search matches name or email', async () => {
    const tag = randomUUID().slice(0, 6);
    const store = t.server.context.store;
    for (let i = 0; i < 201; i++) {
      const username = `p${tag}${String(i).padStart(3, '0')}`;
      await store.users.create({ id: randomUUID(), username, skeleton: username, passwordHash: 'not-a-real-hash', roles: [], now: new Date(t.clock.now()), ...(i === 7 ? { email: `Seven.${tag}@Example.com` } : {}) }, { ip: null, userAgent: null });
    }
    const first = await call('GET', `/admin/users?query=${tag}&limit=200`);
    assert.equal(first.status, 200);
    assert.equal(first.body.users.length, 200);
    assert.ok(first.body.next, 'a next cursor past the page');
    const second = await call('GET', `/admin/users?query=${tag}&limit=200&cursor=${first.body.next}`);
    assert.deepEqual(second.body.users.map((u: { username: string }) => u.username), [`p${tag}200`]);
    assert.equal(second.body.next, null);
    assert.equal((await call('GET', '/admin/users?limit=201')).status, 400);
    const byEmail = await call('GET', `/admin/users?query=${encodeURIComponent(`seven.${tag}@example`)}`);
    assert.deepEqual(byEmail.body.users.map((u: { username: string; email: string; email_verified: boolean }) => [u.username, u.email, u.email_verified]), [
      [`p${tag}007`, `Seven.${tag}@Example.com`, false],
    ]);
    const user = first.body.users[0];
    assert.deepEqual(Object.keys(user).sort(), ['active_sessions', 'created_at', 'disabled', 'email', 'email_verified', 'id', 'mfa', 'roles', 'username']);
    assert.equal((await call('GET', '/admin/users?cursor=!!')).status, 400);
  });

  test('one user with its sessions; an unknown or malformed id is 404 not_found', async () => {
    const user = await signUp(t);
    const found = await call('GET', `/admin/users/${user.userId}`);
    assert.equal(found.status, 200);
    assert.equal(found.body.username, user.username);
    assert.equal(found.body.active_sessions, 1);
    assert.deepEqual(found.body.sessions.map((s: { id: string }) => s.id), [user.pair.session_id]);
    for (const id of [randomUUID(), 'not-a-uuid']) assert.equal((await call('GET', `/admin/users/${id}`)).body.error, 'not_found');
  });

  test('roles: replaced, audited with the acting admin, in tokens from the next refresh; an admin cannot drop their own admin role', async () => {
    const user = await signUp(t);
    const patched = await call('PATCH', `/admin/users/${user.userId}`, { roles: ['editor', 'editor', 'auditor'] });
    assert.equal(patched.status, 200);
    assert.deepEqual(patched.body.roles, ['editor', 'auditor']);
    const refreshed = await t.call('POST', '/auth/refresh', { token: user.pair.refresh_token });
    assert.deepEqual(decodeJwt(refreshed.body.access_token).roles, ['editor', 'auditor']);
    const [row] = await t.server.context.store.audit.list({ userId: user.userId, event: 'user.roles_changed', limit: 1 });
    assert.equal(row?.actorId, admin.id);
    assert.equal(row?.actorUsername, admin.username);
    assert.match(row?.reason ?? '', /editor, auditor/);

    const self = await call('PATCH', `/admin/users/${admin.id}`, { roles: ['editor'] });
    assert.equal(self.status, 400);
    assert.match(self.body.message, /own admin role/);
    const selfDisable = await call('PATCH', `/admin/users/${admin.id}`, { disabled: true });
    assert.equal(selfDisable.status, 400);
    assert.deepEqual((await t.server.context.store.users.findById(admin.id))?.roles, ['admin'], 'unchanged');
    assert.equal((await call('PATCH', `/admin/users/${admin.id}`, { roles: ['admin', 'ops'] })).status, 200, 'keeping admin is fine');
    assert.equal((await call('PATCH', `/admin/users/${user.userId}`, { roles: ['bad role'] })).status, 400);
    assert.equal((await call('PATCH', `/admin/users/${user.userId}`, { roles: ['x'], extra: 1 })).status, 400);
  });

  test('a demoted admin is refused at once, with an access token that still says admin', async () => {
    const username = uniqueName('second');
    const second = await addUser(t.server.context, { username, password: PASSWORD, roles: ['admin'], actor: OPERATOR });
    const login = await t.call('POST', '/auth/login', { body: { username, password: PASSWORD } });
    assert.equal((await call('GET', '/admin/users', undefined, login.body.access_token)).status, 200);
    assert.equal((await call('PATCH', `/admin/users/${second.id}`, { roles: [] })).status, 200, 'one admin demotes another');
    assert.deepEqual(decodeJwt(login.body.access_token).roles, ['admin']);
    assert.equal((await call('GET', '/admin/users', undefined, login.body.access_token)).body.error, 'forbidden');
  });

  test('disable ends every session of the user; enable lets them back in; end sessions revokes with reason admin', async () => {
    const user = await signUp(t);
    const disabled = await call('PATCH', `/admin/users/${user.userId}`, { disabled: true });
    assert.equal(disabled.body.disabled, true);
    assert.equal(disabled.body.active_sessions, 0);
    assert.equal((await t.call('POST', '/auth/refresh', { token: user.pair.refresh_token })).body.error, 'token_revoked');
    assert.equal((await t.call('POST', '/auth/login', { body: { username: user.username, password: user.password } })).body.error, 'account_disabled');
    assert.equal((await call('PATCH', `/admin/users/${user.userId}`, { disabled: false })).body.disabled, false);
    const again = await t.call('POST', '/auth/login', { body: { username: user.username, password: user.password } });
    assert.equal(again.status, 200);

    assert.equal((await call('DELETE', `/admin/users/${user.userId}/sessions`)).status, 204);
    assert.equal((await t.call('POST', '/auth/refresh', { token: again.body.refresh_token })).body.error, 'token_revoked');
    const revoked = await t.server.context.store.audit.list({ userId: user.userId, event: 'session.revoked', limit: 10 });
    assert.equal(revoked[0]?.reason, 'admin');
    assert.equal(revoked[0]?.actorUsername, admin.username);
    assert.equal((await call('DELETE', `/admin/users/${randomUUID()}/sessions`)).status, 404);
  });

  test('roles and disabled in one PATCH change together, in one transaction, both audited', async () => {
    const user = await signUp(t);
    const both = await call('PATCH', `/admin/users/${user.userId}`, { roles: ['editor'], disabled: true });
    assert.equal(both.status, 200, JSON.stringify(both.body));
    assert.deepEqual(both.body.roles, ['editor']);
    assert.equal(both.body.disabled, true);
    assert.equal(both.body.active_sessions, 0);
    const events = await t.server.context.store.audit.list({ userId: user.userId, limit: 10 });
    const changed = events.filter((e) => e.event === 'user.roles_changed' || e.event === 'user.disabled');
    assert.equal(changed.length, 2);
    assert.equal(changed[0]!.at.getTime(), changed[1]!.at.getTime(), 'one transaction, one time');
    const self = await call('PATCH', `/admin/users/${admin.id}`, { roles: ['admin', 'ops2'], disabled: true });
    assert.equal(self.status, 400);
    assert.ok(!(await t.server.context.store.users.findById(admin.id))?.roles.includes('ops2'), 'the allowed half did not happen either');
  });

  test('a reset link: under --public-url, one-time, 30 minutes; the user signs in with the new password', async () => {
    const user = await signUp(t);
    const link = await call('POST', `/admin/users/${user.userId}/password-reset`);
    assert.equal(link.status, 200);
    assert.match(link.body.reset_url, /^https:\/\/app\.example\.test\/#reset-password=[A-Za-z0-9_-]{43}$/);
    assert.equal(link.body.mailed, false, 'no mail set up');
    const token = link.body.reset_url.split('=')[1];
    assert.equal((await t.call('POST', '/auth/password/reset', { body: { token, new_password: 'an admin-led password' } })).status, 204);
    assert.equal((await t.call('POST', '/auth/password/reset', { body: { token, new_password: 'again and again' } })).body.error, 'invalid_reset_token');
    assert.equal((await t.call('POST', '/auth/login', { body: { username: user.username, password: 'an admin-led password' } })).status, 200);
    const stale = (await call('POST', `/admin/users/${user.userId}/password-reset`)).body.reset_url.split('=')[1];
    t.clock.advance(30 * 60 + 1);
    admin.token = (await t.call('POST', '/auth/login', { body: { username: admin.username, password: PASSWORD } })).body.access_token;
    assert.equal((await t.call('POST', '/auth/password/reset', { body: { token: stale, new_password: 'too late for this' } })).body.error, 'invalid_reset_token');
    const [row] = await t.server.context.store.audit.list({ userId: user.userId, event: 'password.reset_requested', limit: 1 });
    assert.equal(row?.actorId, admin.id);
  });

  test("everyone's audit events, newest first, filtered and paged with next/before", async () => {
    const user = await signUp(t);
    for (let i = 0; i < 3; i++) await t.call('POST', '/auth/login', { body: { username: user.username, password: 'wrong password here' } });
    const page1 = await call('GET', `/admin/audit?username=${user.username}&event=login.failed&limit=2`);
    assert.equal(page1.status, 200);
    assert.equal(page1.body.events.length, 2);
    assert.ok(page1.body.next);
    const page2 = await call('GET', `/admin/audit?username=${user.username}&event=login.failed&limit=2&before=${page1.body.next}`);
    assert.equal(page2.body.events.length, 1);
    assert.equal(page2.body.next, null);
    const ids = [...page1.body.events, ...page2.body.events].map((e: { id: string }) => Number(e.id));
    assert.deepEqual(ids, [...ids].sort((a, b) => b - a), 'newest first');
    const all = await call('GET', '/admin/audit?limit=500');
    assert.ok(new Set(all.body.events.map((e: { user_id: string }) => e.user_id)).size > 2, 'everyone’s');
    const since = await call('GET', `/admin/audit?since=${encodeURIComponent(new Date(t.clock.now() + 1000).toISOString())}`);
    assert.deepEqual(since.body.events, []);
    for (const query of ['limit=0', 'limit=501', 'since=yesterday', 'since=0000-01-01', 'before=abc', 'unknown=1']) assert.equal((await call('GET', `/admin/audit?${query}`)).status, 400, query);
    await call('POST', `/admin/users/${user.userId}/password-reset`);
    const byActor = await call('GET', `/admin/audit?actor=${admin.username.toUpperCase()}&limit=500`);
    assert.ok(byActor.body.events.length > 0);
    assert.ok(byActor.body.events.every((e: { actor_username: string }) => e.actor_username === admin.username), 'only what that admin did');
    assert.deepEqual((await call('GET', '/admin/audit?actor=nobody-at-all')).body.events, []);
  });
});
