import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type ReceivedMail, startSmtpServer, type TestSmtpServer } from '../../../test/support/smtp_server.js';
import { startTestServer, type TestServer, uniqueName } from '../../../test/support/test_server.js';

const PASSWORD = 'correct horse battery';
const PUBLIC_URL = 'https://app.example.test';

function linkToken(mail: ReceivedMail): string {
  const link = mail.firstLink();
  return link.slice(link.indexOf('=') + 1);
}

/**
 * What someone holding a stolen session (or racing the owner) must not be able to do
 * to an account through its recovery address, and what the owner hears about.
 */
describe('account takeover through the recovery address', () => {
  let t: TestServer;
  let smtp: TestSmtpServer;

  before(async () => {
    smtp = await startSmtpServer();
    t = await startTestServer({ smtpUrl: smtp.url, publicUrl: `${PUBLIC_URL}/`, mailPerHour: 3 });
  });
  after(async () => {
    await t?.close();
    await smtp?.close();
  });

  const mailsTo = (address: string, subject?: RegExp) => smtp.messages.filter((m) => m.to.includes(address) && (!subject || subject.test(m.subject)));

  async function verifiedUser() {
    const username = uniqueName('owner');
    const email = `${username}@example.com`;
    const registered = await t.call('POST', '/auth/register', { body: { username, password: PASSWORD, email } });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
    const mail = await smtp.waitForMail((m) => m.to.includes(email) && /confirm/i.test(m.subject));
    assert.equal((await t.call('POST', '/auth/email/verify', { body: { token: linkToken(mail) } })).status, 204);
    const login = await t.call('POST', '/auth/login', { body: { username, password: PASSWORD } });
    return { username, email, userId: registered.body.user.id as string, token: login.body.access_token as string };
  }

  test('moving a verified address needs the current password; a wrong or missing one changes nothing and is audited', async () => {
    const user = await verifiedUser();
    const thief = `${user.username}@thief.example`;
    for (const body of [{ email: thief }, { email: thief, current_password: 'not the password' }]) {
      const refused = await t.call('POST', '/auth/email', { token: user.token, body });
      assert.equal(refused.status, 401, JSON.stringify(refused.body));
      assert.equal(refused.body.error, 'invalid_credentials');
    }
    const stored = await t.server.context.store.users.findById(user.userId);
    assert.equal(stored?.email, user.email);
    assert.ok(stored?.emailVerifiedAt, 'still verified');
    const failures = await t.server.context.store.audit.list({ userId: user.userId, event: 'email.changed', limit: 10 });
    assert.deepEqual(failures.map((e) => [e.outcome, e.reason]), [
      ['failure', 'wrong_current_password'],
      ['failure', 'current_password_missing'],
    ]);
  });

  test('with the password the address moves; the old address is told, and reset links mailed before stop working', async () => {
    const user = await verifiedUser();
    assert.equal((await t.call('POST', '/auth/password/forgot', { body: { username: user.username } })).status, 202);
    const reset = linkToken(await smtp.waitForMail((m) => m.to.includes(user.email) && /reset/i.test(m.subject)));
    const moved = `${user.username}@new.example`;
    const set = await t.call('POST', '/auth/email', { token: user.token, body: { email: moved, current_password: PASSWORD } });
    assert.equal(set.status, 202, JSON.stringify(set.body));
    const notice = await smtp.waitForMail((m) => m.to.includes(user.email) && /security notice/i.test(m.subject));
    assert.match(notice.text, new RegExp(`changed to ${moved.replace('.', '\\.')}`));
    assert.doesNotMatch(notice.text, /https?:\/\//, 'a notice carries no link');
    await smtp.waitForMail((m) => m.to.includes(moved) && /confirm/i.test(m.subject));
    const late = await t.call('POST', '/auth/password/reset', { body: { token: reset, new_password: 'the thief’s password' } });
    assert.equal(late.status, 400);
    assert.equal(late.body.error, 'invalid_reset_token');
  });

  test('a session that signed in long ago needs the password even to set a first address', async () => {
    const username = uniqueName('old');
    await t.call('POST', '/auth/register', { body: { username, password: PASSWORD } });
    const login = await t.call('POST', '/auth/login', { body: { username, password: PASSWORD } });
    t.clock.advance(11 * 60);
    const refreshed = await t.call('POST', '/auth/refresh', { body: { refresh_token: login.body.refresh_token } });
    assert.equal(refreshed.status, 200);
    const email = `${username}@example.net`;
    const refused = await t.call('POST', '/auth/email', { token: refreshed.body.access_token, body: { email } });
    assert.equal(refused.status, 401);
    assert.equal(refused.body.error, 'invalid_credentials');
    assert.match(refused.body.message, /current_password/);
    assert.equal((await t.server.context.store.users.findByUsername(username))?.email, null);
    const set = await t.call('POST', '/auth/email', { token: refreshed.body.access_token, body: { email, current_password: PASSWORD } });
    assert.equal(set.status, 202);
  });

  test('a completed reset is told to the address it went to', async () => {
    const user = await verifiedUser();
    await t.call('POST', '/auth/password/forgot', { body: { email: user.email } });
    const token = linkToken(await smtp.waitForMail((m) => m.to.includes(user.email) && /reset/i.test(m.subject)));
    assert.equal((await t.call('POST', '/auth/password/reset', { body: { token, new_password: 'a brand new password' } })).status, 204);
    const notice = await smtp.waitForMail((m) => m.to.includes(user.email) && /security notice/i.test(m.subject));
    assert.match(notice.text, /was reset/);
  });

  test('disabling an account voids its reset links; a disabled account cannot reset, and gets no reset link from an operator', async () => {
    const user = await verifiedUser();
    await t.call('POST', '/auth/password/forgot', { body: { username: user.username } });
    const token = linkToken(await smtp.waitForMail((m) => m.to.includes(user.email) && /reset/i.test(m.subject)));
    await t.server.context.store.users.setDisabled({ user: { id: user.userId }, disabled: true, now: new Date(t.clock.now()), audit: {} });
    const refused = await t.call('POST', '/auth/password/reset', { body: { token, new_password: 'a brand new password' } });
    assert.equal(refused.body.error, 'invalid_reset_token');
    const { issueResetLink } = await import('./flows/password_reset.js');
    await assert.rejects(issueResetLink(t.server.context, { user: { id: user.userId }, actor: { kind: 'operator' } }), { code: 'invalid_request' });
    await t.server.context.store.users.setDisabled({ user: { id: user.userId }, disabled: false, now: new Date(t.clock.now()), audit: {} });
    const still = await t.call('POST', '/auth/password/reset', { body: { token, new_password: 'a brand new password' } });
    assert.equal(still.body.error, 'invalid_reset_token', 'enabling again does not bring old links back');
  });

  test('a forgot-password request past the mail allowance still writes its audit row', async () => {
    const user = await verifiedUser();
    t.clock.advance(3601);
    for (let i = 0; i < 4; i++) await t.call('POST', '/auth/password/forgot', { body: { username: user.username } });
    const rows = await t.server.context.store.audit.list({ userId: user.userId, event: 'password.reset_requested', limit: 10 });
    assert.equal(rows.length, 4);
    assert.deepEqual(rows.map((r) => r.outcome), ['failure', 'success', 'success', 'success']);
    assert.equal(rows[0]?.reason, 'mail limit');
  });

  test('one address gets at most --mail-per-hour links, however many accounts take it in turn', async () => {
    t.clock.advance(3601);
    const victim = `${uniqueName('victim')}@example.org`;
    const accounts = [];
    for (let i = 0; i < 3; i++) {
      const username = uniqueName('relay');
      await t.call('POST', '/auth/register', { body: { username, password: PASSWORD } });
      accounts.push((await t.call('POST', '/auth/login', { body: { username, password: PASSWORD } })).body.access_token as string);
    }
    for (let round = 0; round < 2; round++) {
      for (const [i, token] of accounts.entries()) {
        const set = await t.call('POST', '/auth/email', { token, body: { email: victim } });
        assert.equal(set.status, 202, JSON.stringify(set.body));
        // Let the next account take the address.
        await t.call('POST', '/auth/email', { token, body: { email: `spare${round}${i}.${uniqueName('x')}@example.org` } });
      }
    }
    await t.server.context.mailer!.idle();
    assert.equal(mailsTo(victim).length, 3);
  });

  test('addresses that only look alike are refused: invisible format characters, bidi overrides, lone surrogates, over 254 octets', async () => {
    const username = uniqueName('lookalike');
    await t.call('POST', '/auth/register', { body: { username, password: PASSWORD } });
    const token = (await t.call('POST', '/auth/login', { body: { username, password: PASSWORD } })).body.access_token;
    for (const email of ['ad\u200Ba@example.com', 'ada@exam\u202Eple.com', 'ada\uD800@example.com', `${'é'.repeat(60)}@${'é'.repeat(95)}.example`]) {
      const refused = await t.call('POST', '/auth/email', { token, body: { email } });
      assert.equal(refused.status, 400, `${JSON.stringify(email)}: ${JSON.stringify(refused.body)}`);
      assert.equal(refused.body.error, 'invalid_request');
    }
    assert.equal((await t.server.context.store.users.findByUsername(username))?.email, null);
  });

  test('the audit search refuses years PostgreSQL and JavaScript disagree about, instead of failing', async () => {
    const { listAuditEvents } = await import('./flows/user_administration.js');
    for (const since of ['0000-01-01', '-000001-01-01T00:00:00Z', '+010000-01-01T00:00:00Z']) {
      await assert.rejects(listAuditEvents(t.server.context, { since }), { code: 'invalid_request' }, since);
    }
    assert.ok(Array.isArray((await listAuditEvents(t.server.context, { since: '2026-01-01' })).events));
  });
});
