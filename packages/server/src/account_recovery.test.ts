import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { captureLogs } from '../../../test/support/log_capture.js';
import { type ReceivedMail, startSmtpServer, type TestSmtpServer } from '../../../test/support/smtp_server.js';
import { startTestServer, type TestServer, uniqueName } from '../../../test/support/test_server.js';

const PASSWORD = 'correct horse battery';
const PUBLIC_URL = 'https://app.example.test/accounts';

/** The token of a mailed link: what follows `#reset-password=` or `#verify-email=`. */
function linkToken(mail: ReceivedMail, kind: 'reset-password' | 'verify-email'): string {
  const link = mail.firstLink();
  assert.ok(link.startsWith(`${PUBLIC_URL}/#${kind}=`), `the link points at the web app under --public-url: ${link}`);
  return link.slice(link.indexOf('=') + 1);
}

describe('without --smtp-url', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer();
  });
  after(() => t?.close());

  test('the mail routes answer 503 not_configured and change nothing; reset and verify links still work as links', async () => {
    const forgot = await t.call('POST', '/auth/password/forgot', { body: { username: 'anyone' } });
    assert.equal(forgot.status, 503);
    assert.equal(forgot.body.error, 'not_configured');
    const username = uniqueName('nomail');
    const register = await t.call('POST', '/auth/register', { body: { username, password: PASSWORD, email: `${username}@example.com` } });
    assert.equal(register.status, 503);
    assert.equal(register.body.error, 'not_configured');
    assert.equal(await t.server.context.store.users.findByUsername(username), null, 'no user was created');
    await t.call('POST', '/auth/register', { body: { username, password: PASSWORD } });
    const login = await t.call('POST', '/auth/login', { body: { username, password: PASSWORD } });
    const email = await t.call('POST', '/auth/email', { token: login.body.access_token, body: { email: `${username}@example.com` } });
    assert.equal(email.status, 503);
    assert.equal((await t.server.context.store.users.findByUsername(username))?.email, null);
    assert.equal((await t.call('POST', '/auth/password/reset', { body: { token: 'x'.repeat(43), new_password: 'a new password' } })).body.error, 'invalid_reset_token');
    assert.equal((await t.call('POST', '/auth/email/verify', { body: { token: 'x'.repeat(43) } })).body.error, 'invalid_reset_token');
  });
});

describe('account mail against a real SMTP server', () => {
  let t: TestServer;
  let smtp: TestSmtpServer;
  const logs = captureLogs();

  before(async () => {
    smtp = await startSmtpServer();
    t = await startTestServer({ smtpUrl: smtp.url, publicUrl: `${PUBLIC_URL}/`, mailFrom: 'Accounts <accounts@example.test>', log: 'info', logStream: logs.stream, mailPerHour: 3 });
  });
  after(async () => {
    await t?.close();
    await smtp?.close();
  });

  /** Registers with an email, follows the verification link, logs in. */
  async function verifiedUser() {
    const username = uniqueName('mail');
    const email = `${username}@example.com`;
    const registered = await t.call('POST', '/auth/register', { body: { username, password: PASSWORD, email } });
    assert.equal(registered.status, 201, JSON.stringify(registered.body));
    const mail = await smtp.waitForMail((m) => m.to.includes(email) && /confirm your email/i.test(m.subject));
    assert.equal((await t.call('POST', '/auth/email/verify', { body: { token: linkToken(mail, 'verify-email') } })).status, 204);
    const login = await t.call('POST', '/auth/login', { body: { username, password: PASSWORD } });
    return { username, email, userId: registered.body.user.id as string, pair: login.body };
  }

  test('sign-up with an email mails a verification link (text and HTML, from --mail-from); it works once; email_verified reaches tokens at the next refresh', async () => {
    const username = uniqueName('verify');
    const email = `${username}@Example.com`;
    const registered = await t.call('POST', '/auth/register', { body: { username, password: PASSWORD, email } });
    assert.equal(registered.status, 201);
    assert.deepEqual(Object.keys(registered.body.user).sort(), ['id', 'username']);
    const login = await t.call('POST', '/auth/login', { body: { username, password: PASSWORD } });
    assert.equal(decodeJwt(login.body.access_token).email_verified, false, 'an unverified email says so');
    const mail = await smtp.waitForMail((m) => m.to.some((to) => to.toLowerCase() === email.toLowerCase()));
    assert.equal(mail.from, 'Accounts <accounts@example.test>');
    const token = linkToken(mail, 'verify-email');
    assert.ok(mail.html.includes(token), 'the HTML part carries the link too');
    assert.match(mail.text, /24 hours/);
    const me = await t.call('GET', '/auth/me', { token: login.body.access_token });
    assert.deepEqual({ email: me.body.email, verified: me.body.email_verified }, { email, verified: false });

    assert.equal((await t.call('POST', '/auth/email/verify', { body: { token } })).status, 204);
    const again = await t.call('POST', '/auth/email/verify', { body: { token } });
    assert.equal(again.status, 400);
    assert.equal(again.body.error, 'invalid_reset_token');
    const refreshed = await t.call('POST', '/auth/refresh', { token: login.body.refresh_token });
    assert.equal(decodeJwt(refreshed.body.access_token).email_verified, true);
    const plain = await t.call('POST', '/auth/login', { body: { username: uniqueName('x'), password: PASSWORD } });
    assert.equal(plain.status, 401);
    const rows = await t.server.context.store.audit.list({ userId: registered.body.user.id, event: 'email.verified', limit: 5 });
    assert.equal(rows.length, 1);
  });

  test('a user without an email has no email_verified claim; POST /auth/email sets one, unverified, and mails it; another user’s address is email_taken', async () => {
    const username = uniqueName('setmail');
    await t.call('POST', '/auth/register', { body: { username, password: PASSWORD } });
    const login = await t.call('POST', '/auth/login', { body: { username, password: PASSWORD } });
    assert.equal('email_verified' in decodeJwt(login.body.access_token), false);
    const { email: taken } = await verifiedUser();
    const clash = await t.call('POST', '/auth/email', { token: login.body.access_token, body: { email: taken.toUpperCase() } });
    assert.equal(clash.status, 409);
    assert.equal(clash.body.error, 'email_taken');
    const bad = await t.call('POST', '/auth/email', { token: login.body.access_token, body: { email: 'not an address' } });
    assert.equal(bad.status, 400);
    assert.equal(bad.body.error, 'invalid_request');
    const email = `${username}@example.org`;
    const set = await t.call('POST', '/auth/email', { token: login.body.access_token, body: { email } });
    assert.equal(set.status, 202);
    const mail = await smtp.waitForMail((m) => m.to.includes(email));
    assert.equal((await t.call('POST', '/auth/email/verify', { body: { token: linkToken(mail, 'verify-email') } })).status, 204);
    const me = await t.call('GET', '/auth/me', { token: login.body.access_token });
    assert.equal(me.body.email_verified, true);
    assert.equal((await t.call('POST', '/auth/email', { body: { email } })).status, 401, 'needs an access token');
  });

  test('forgot password: 202 and the same body for a known user, an unknown one, one without a verified email, by name or by email; only the first gets mail', async () => {
    const known = await verifiedUser();
    const unverified = uniqueName('unverified');
    await t.call('POST', '/auth/register', { body: { username: unverified, password: PASSWORD, email: `${unverified}@example.com` } });
    const before = smtp.messages.length;
    const answers = [
      await t.call('POST', '/auth/password/forgot', { body: { username: known.username } }),
      await t.call('POST', '/auth/password/forgot', { body: { username: uniqueName('ghost') } }),
      await t.call('POST', '/auth/password/forgot', { body: { email: `${uniqueName('ghost')}@example.com` } }),
      await t.call('POST', '/auth/password/forgot', { body: { username: unverified } }),
      await t.call('POST', '/auth/password/forgot', { body: { email: known.email.toUpperCase() } }),
    ];
    for (const a of answers) {
      assert.equal(a.status, 202);
      assert.deepEqual(a.body, answers[0]!.body);
    }
    await t.server.context.mailer!.idle();
    const resets = smtp.messages.slice(before).filter((m) => /reset/i.test(m.subject));
    assert.deepEqual(resets.map((m) => m.to), [[known.email], [known.email]], 'two mails, both to the verified address');
    assert.match(resets[0]!.text, /30 minutes/);
  });

  test('forgot password takes about as long for unknown users as for known ones', async () => {
    const known = await verifiedUser();
    const timings = { known: [] as number[], unknown: [] as number[] };
    for (let i = 0; i < 12; i++) {
      for (const kind of ['known', 'unknown'] as const) {
        const started = performance.now();
        // A fresh limit window each time: the per-account mail limit must not change the work done.
        t.clock.advance(3601);
        await t.call('POST', '/auth/password/forgot', { body: { username: kind === 'known' ? known.username : uniqueName('ghost') } });
        timings[kind].push(performance.now() - started);
      }
    }
    const median = (xs: number[]) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const [k, u] = [median(timings.known), median(timings.unknown)];
    assert.ok(Math.abs(k - u) < Math.max(15, 0.5 * Math.max(k, u)), `medians ${k.toFixed(1)} ms (known) vs ${u.toFixed(1)} ms (unknown)`);
  });

  test('reset: a weak password changes nothing; the token works once, ends every session, and is never a login', async () => {
    const user = await verifiedUser();
    const other = await t.call('POST', '/auth/login', { body: { username: user.username, password: PASSWORD } });
    t.clock.advance(3601);
    await t.call('POST', '/auth/password/forgot', { body: { username: user.username } });
    const token = linkToken(await smtp.waitForMail((m) => m.to.includes(user.email) && /reset/i.test(m.subject)), 'reset-password');

    const weak = await t.call('POST', '/auth/password/reset', { body: { token, new_password: 'short' } });
    assert.equal(weak.status, 400);
    assert.equal(weak.body.error, 'weak_password');
    assert.equal((await t.server.context.store.sessions.listActive(user.userId, new Date(t.clock.now()))).length, 2, 'the weak attempt ended nothing');
    assert.equal((await t.call('GET', '/auth/me', { token })).body.error, 'invalid_token', 'a reset token is no access token');
    assert.equal((await t.call('POST', '/auth/refresh', { body: { refresh_token: token } })).body.error, 'invalid_token', 'nor a refresh token');

    const reset = await t.call('POST', '/auth/password/reset', { body: { token, new_password: 'a brand new password' } });
    assert.equal(reset.status, 204);
    assert.equal(reset.body, undefined, 'no tokens: the user signs in');
    assert.equal((await t.server.context.store.sessions.listActive(user.userId, new Date(t.clock.now()))).length, 0);
    for (const pair of [user.pair, other.body]) {
      assert.equal((await t.call('POST', '/auth/refresh', { token: pair.refresh_token })).body.error, 'token_revoked');
    }
    const reused = await t.call('POST', '/auth/password/reset', { body: { token, new_password: 'yet another password' } });
    assert.equal(reused.status, 400);
    assert.equal(reused.body.error, 'invalid_reset_token');
    assert.equal((await t.call('POST', '/auth/login', { body: { username: user.username, password: PASSWORD } })).status, 401);
    assert.equal((await t.call('POST', '/auth/login', { body: { username: user.username, password: 'a brand new password' } })).status, 200);
    const events = (await t.server.context.store.audit.list({ userId: user.userId, limit: 50 })).map((e) => `${e.event}:${e.reason ?? ''}`);
    assert.ok(events.includes('password.reset:'), events.join(' '));
    assert.ok(events.includes('password.reset_requested:'));
    assert.ok(events.filter((e) => e === 'session.revoked:password_reset').length >= 2);
  });

  test('reset tokens: expired after 30 minutes, forged, malformed, or raced: invalid_reset_token; of two resets at once one wins', async () => {
    const user = await verifiedUser();
    t.clock.advance(3601);
    await t.call('POST', '/auth/password/forgot', { body: { email: user.email } });
    await t.call('POST', '/auth/password/forgot', { body: { email: user.email } });
    await t.server.context.mailer!.idle();
    const [first, second] = smtp.messages.filter((m) => m.to.includes(user.email) && /reset/i.test(m.subject)).map((m) => linkToken(m, 'reset-password'));
    const forged = `${first!.slice(0, -1)}${first!.endsWith('A') ? 'B' : 'A'}`;
    for (const token of [forged, 'short', `${first}x`, '']) {
      const res = await t.call('POST', '/auth/password/reset', { body: { token, new_password: 'a brand new password' } });
      assert.equal(res.status, 400, token);
      assert.ok(['invalid_reset_token', 'invalid_request'].includes(res.body.error), res.body.error);
    }
    const race = await Promise.all([1, 2, 3].map((i) => t.call('POST', '/auth/password/reset', { body: { token: second, new_password: `raced password ${i}` } })));
    assert.deepEqual(race.map((r) => r.status).sort(), [204, 400, 400]);
    assert.equal((await t.call('POST', '/auth/password/reset', { body: { token: first, new_password: 'another new password' } })).body.error, 'invalid_reset_token', 'a reset kills the other links');

    t.clock.advance(3601);
    await t.call('POST', '/auth/password/forgot', { body: { username: user.username } });
    await t.server.context.mailer!.idle();
    const late = linkToken(smtp.messages.filter((m) => m.to.includes(user.email)).at(-1)!, 'reset-password');
    t.clock.advance(30 * 60 + 1);
    assert.equal((await t.call('POST', '/auth/password/reset', { body: { token: late, new_password: 'too late password' } })).body.error, 'invalid_reset_token');
  });

  test('an account gets at most --mail-per-hour mails; past it the answer is still 202 and a rate_limited row is written', async () => {
    const user = await verifiedUser();
    t.clock.advance(3601);
    const before = smtp.messages.filter((m) => m.to.includes(user.email)).length;
    for (let i = 0; i < 5; i++) assert.equal((await t.call('POST', '/auth/password/forgot', { body: { username: user.username } })).status, 202);
    await t.server.context.mailer!.idle();
    assert.equal(smtp.messages.filter((m) => m.to.includes(user.email)).length - before, 3);
    const limited = await t.server.context.store.audit.list({ userId: user.userId, event: 'rate_limited', limit: 5 });
    assert.equal(limited[0]?.reason, 'mail limit');
  });

  test('no token from a link, and no password, in any log line or audit row', async () => {
    await t.server.context.mailer!.idle();
    // Security notices carry no link; every other mail carries one token.
    const tokens = smtp.messages.filter((m) => !m.subject.startsWith('Security notice')).map((m) => m.firstLink().split('=').at(-1)!);
    assert.ok(tokens.length > 5);
    const audit = JSON.stringify(await t.server.context.store.audit.list({ limit: 10_000 }));
    for (const secret of [...tokens, PASSWORD, 'a brand new password']) {
      assert.equal(logs.text().includes(secret), false, 'a secret reached the log');
      assert.equal(audit.includes(secret), false, 'a secret reached the audit log');
    }
  });
});
