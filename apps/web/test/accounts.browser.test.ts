import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { runAdminOperation } from '@tessera/server';
import { type Browser, type BrowserContext, chromium, type Locator, type Page } from 'playwright-core';
import { startSmtpServer } from '../../../test/support/smtp_server.js';
import { startTestServer, type TestServer, uniqueName } from '../../../test/support/test_server.js';

/** Debian's Chromium; these flags keep it from stalling on this closed network. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WEB_ROOT = new URL('../dist', import.meta.url).pathname;
const PASSWORD = 'a long enough password';
const NEW_PASSWORD = 'another long passphrase';

type Smtp = Awaited<ReturnType<typeof startSmtpServer>>;
type Mail = Smtp['messages'][number];

/** A port free right now: the public URL (where mail links point) must be known before the server starts. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== 'object' || !address) throw new Error('no port');
  return address.port;
}

describe('account recovery and the Admin section in a real browser', () => {
  let t: TestServer;
  let smtp: Smtp;
  let browser: Browser;
  let base: string;
  const pageErrors: string[] = [];
  const seenLinks = new Set<string>();

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (.ci/run installs Debian's chromium)`);
    assert.ok(existsSync(`${WEB_ROOT}/index.html`), 'the web app is built (npm run build)');
    smtp = await startSmtpServer();
    const port = await freePort();
    base = `http://localhost:${port}`;
    t = await startTestServer({ webRoot: WEB_ROOT, port, smtpUrl: smtp.url, publicUrl: base });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await t?.close();
    await smtp?.close();
  });

  async function newContext(): Promise<BrowserContext> {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    context.on('page', (page) => page.on('pageerror', (error) => pageErrors.push(error.message)));
    // Whatever runs on :4001 here, `Call API` calls this server's /auth/me.
    await context.route('http://localhost:4001/**', (route) => route.abort());
    return context;
  }
  async function open(context: BrowserContext, url = `${base}/`): Promise<Page> {
    const page = await context.newPage();
    await page.goto(url);
    return page;
  }
  const field = (scope: Page | Locator, label: string) => scope.getByLabel(label, { exact: true });
  const button = (scope: Page | Locator, name: string) => scope.getByRole('button', { name, exact: true });

  async function signIn(page: Page, username: string, password: string): Promise<void> {
    await field(page, 'Username').fill(username);
    await field(page, 'Password').fill(password);
    await button(page, 'Sign in').click();
    await page.getByText(`Signed in as ${username}`).waitFor();
  }
  async function createAccount(page: Page, email?: string, prefix = 'acct'): Promise<string> {
    const username = uniqueName(prefix);
    await field(page, 'Username').fill(username);
    await field(page, 'Password').fill(PASSWORD);
    if (email) await field(page, 'Email').fill(email);
    await button(page, 'Create account').click();
    await page.getByText(`Signed in as ${username}`).waitFor();
    return username;
  }
  /** `Call API` until the page shows the sign-in form (the session is over) and says why. */
  async function expectSignedOut(page: Page, why: RegExp): Promise<void> {
    await button(page, 'Call API').click();
    await field(page, 'Username').waitFor();
    await page.getByRole('status').filter({ hasText: why }).waitFor();
  }

  /** The next mail to `address` that carries a `kind` link not seen before, and that link. */
  async function linkMailed(address: string, kind: 'reset-password' | 'verify-email'): Promise<{ mail: Mail; link: string }> {
    const pattern = new RegExp(`https?://[^\\s"'<>]+#${kind}=[A-Za-z0-9_%~.-]*[A-Za-z0-9_%~-]`);
    const mail = await smtp.waitForMail((m) => {
      const found = pattern.exec(m.text)?.[0];
      return m.to.some((to) => to.toLowerCase().includes(address)) && found !== undefined && !seenLinks.has(found);
    }, 10_000);
    const link = pattern.exec(mail.text)![0];
    seenLinks.add(link);
    assert.ok(link.startsWith(`${base}/#${kind}=`), `the link points at the public URL: ${link}`);
    return { mail, link };
  }
  /** The `message` the API gives for this request now: what the page must show in role=alert. */
  async function apiMessage(method: string, path: string, body: unknown, token?: string): Promise<string> {
    const answer = await t.call(method, path, { body, ...(token ? { token } : {}) });
    assert.ok(answer.status >= 400, `${method} ${path} is refused: ${answer.status}`);
    assert.ok(typeof answer.body.message === 'string' && answer.body.message.length > 0);
    return answer.body.message;
  }
  const tokenOf = (link: string) => decodeURIComponent(link.slice(link.indexOf('=') + 1));
  /** Waits until a list shows the answer to the last request it made (`aria-busy` false). */
  async function settled(list: Locator): Promise<void> {
    await list.and(list.page().locator('[aria-busy="false"]')).waitFor();
  }
  function assertTokenGone(page: Page): void {
    const url = new URL(page.url());
    assert.equal(url.hash, '', `the token left the address bar: ${page.url()}`);
  }

  /** A user with a verified email, made through the API (the browser flow of that is tested on its own). */
  async function userWithVerifiedEmail(): Promise<{ username: string; email: string }> {
    const username = uniqueName('mail');
    const email = `${username}@example.test`;
    const reg = await t.call('POST', '/auth/register', { body: { username, password: PASSWORD, email } });
    assert.equal(reg.status, 201, JSON.stringify(reg.body));
    const { link } = await linkMailed(email, 'verify-email');
    const token = decodeURIComponent(new URL(link).hash.slice('#verify-email='.length));
    const verified = await t.call('POST', '/auth/email/verify', { body: { token } });
    assert.equal(verified.status, 204, JSON.stringify(verified.body));
    return { username, email };
  }

  test('create account with an email; the mailed link verifies it (token out of the address bar); a used link shows the error', async () => {
    const context = await newContext();
    const page = await open(context);
    const email = `${uniqueName('verify')}@example.test`;
    const username = await createAccount(page, email);
    const status = page.getByTestId('email-status');
    await status.filter({ hasText: email }).filter({ hasText: 'not verified' }).waitFor();

    const { mail, link } = await linkMailed(email, 'verify-email');
    assert.ok(mail.subject.length > 0);
    // Opened in the tab that shows the page: only the fragment changes.
    await page.goto(link);
    await page.getByText('Email verified').waitFor();
    assertTokenGone(page);
    await status.filter({ hasText: email }).filter({ hasNotText: 'not verified' }).filter({ hasText: 'verified' }).waitFor();
    await page.getByText(`Signed in as ${username}`).waitFor();
    const me = await page.evaluate(() => ({ local: localStorage.length, session: sessionStorage.length }));
    assert.deepEqual(me, { local: 0, session: 0 }, 'cookie mode: nothing in web storage');

    // The same link again, in another browser: it worked once.
    const other = await newContext();
    const again = await open(other, link);
    const used = await apiMessage('POST', '/auth/email/verify', { token: tokenOf(link) });
    await again.getByRole('alert').filter({ hasText: used }).waitFor();
    assert.equal(await again.getByText('Email verified').count(), 0);
    assertTokenGone(again);
    await other.close();
    await context.close();
  });

  test('signed in without an email: Save email mails a link; verified in another browser; an email another user has is refused', async () => {
    const context = await newContext();
    const page = await open(context);
    await createAccount(page);
    const status = page.getByTestId('email-status');
    await status.filter({ hasText: 'No email yet' }).waitFor();
    const email = `${uniqueName('later')}@example.test`;
    await field(page, 'Email').fill(email);
    await button(page, 'Save email').click();
    await page.getByRole('status').filter({ hasText: `We sent a verification link to ${email}` }).waitFor();
    await status.filter({ hasText: email }).filter({ hasText: 'not verified' }).waitFor();

    const { link } = await linkMailed(email, 'verify-email');
    const phone = await newContext();
    const landing = await open(phone, link);
    await landing.getByText('Email verified').waitFor();
    assertTokenGone(landing);
    await field(landing, 'Username').waitFor(); // not signed in there: the sign-in form below
    await phone.close();

    await page.reload();
    await status.filter({ hasText: email }).filter({ hasNotText: 'not verified' }).waitFor();

    // Another user asks for the same address.
    const second = await newContext();
    const page2 = await open(second);
    const user2 = await createAccount(page2);
    await field(page2, 'Email').fill(email);
    await button(page2, 'Save email').click();
    const taken = await apiMessage('POST', '/auth/email', { email }, (await t.call('POST', '/auth/login', { body: { username: user2, password: PASSWORD } })).body.access_token);
    await page2.getByRole('alert').filter({ hasText: taken }).waitFor();
    await page2.getByTestId('email-status').filter({ hasText: 'No email yet' }).waitFor();
    await second.close();
    await context.close();
  });

  test('forgot password: the mailed link opens New password; the new password signs in, the old fails, other sessions ended; a used link shows the error', async () => {
    const { username, email } = await userWithVerifiedEmail();
    // Signed in elsewhere with the old password: the reset must end that session.
    const laptop = await newContext();
    const laptopPage = await open(laptop);
    await signIn(laptopPage, username, PASSWORD);

    const context = await newContext();
    const page = await open(context);
    await field(page, 'Username').fill(username);
    await page.getByRole('link', { name: 'Forgot password?' }).click();
    // The form starts with what was typed as the username.
    assert.equal(await field(page, 'Username or email').inputValue(), username);
    await button(page, 'Send reset link').click();
    const sent = page.getByRole('status').filter({ hasText: 'If an account matches' });
    await sent.waitFor();
    const neutral = await sent.textContent();

    // An unknown user gets exactly the same answer.
    await field(page, 'Username or email').fill(uniqueName('nobody'));
    await button(page, 'Send reset link').click();
    await sent.waitFor();
    assert.equal(await sent.textContent(), neutral);
    await field(page, 'Username or email').fill('nobody-here@example.test');
    await button(page, 'Send reset link').click();
    await sent.waitFor();
    assert.equal(await sent.textContent(), neutral);

    const { link } = await linkMailed(email, 'reset-password');
    await page.goto(link);
    await field(page, 'New password').fill(NEW_PASSWORD);
    assertTokenGone(page);
    await button(page, 'Set new password').click();
    await page.getByRole('status').filter({ hasText: 'Your password was changed' }).waitFor();
    await field(page, 'Username').waitFor();

    // The old password fails, the new one signs in.
    await field(page, 'Username').fill(username);
    await field(page, 'Password').fill(PASSWORD);
    await button(page, 'Sign in').click();
    await page.getByRole('alert').filter({ hasText: 'Invalid username or password.' }).waitFor();
    await signIn(page, username, NEW_PASSWORD);

    // The session signed in before the reset is over.
    await expectSignedOut(laptopPage, /Your session was ended/);

    // The same link again: refused, in role=alert, and the password stays.
    const again = await open(await newContext(), link);
    await field(again, 'New password').fill('yet another passphrase');
    await button(again, 'Set new password').click();
    const used = await apiMessage('POST', '/auth/password/reset', { token: tokenOf(link), new_password: 'yet another passphrase' });
    await again.getByRole('alert').filter({ hasText: used }).waitFor();
    await again.getByRole('link', { name: 'Ask for a new link' }).waitFor();
    const login = await t.call('POST', '/auth/login', { body: { username, password: NEW_PASSWORD } });
    assert.equal(login.status, 200);
    await again.context().close();

    // By email address this time: a mail arrives too.
    const byEmail = await open(await newContext(), `${base}/#forgot-password`);
    await field(byEmail, 'Username or email').fill(email);
    await button(byEmail, 'Send reset link').click();
    await byEmail.getByRole('status').filter({ hasText: 'If an account matches' }).waitFor();
    await linkMailed(email, 'reset-password');
    await button(byEmail, 'Back to sign in').click();
    await field(byEmail, 'Password').waitFor();
    await byEmail.context().close();
    await laptop.close();
    await context.close();
  });

  test('admin: search, roles, disable (its session ends), enable, end sessions, reset link, audit events; an admin cannot lock themselves out', async () => {
    const adminName = uniqueName('admin');
    await runAdminOperation(t.server.context, { op: 'user.add', username: adminName, password: PASSWORD, roles: ['admin'] });

    // Bob signs up and stays signed in in his own browser.
    const bobContext = await newContext();
    const bobPage = await open(bobContext);
    const bob = await createAccount(bobPage, undefined, 'bob');

    const context = await newContext();
    const page = await open(context);
    await signIn(page, adminName, PASSWORD);
    const admin = page.getByRole('region', { name: 'Admin', exact: true });
    await admin.waitFor();
    const users = admin.getByRole('region', { name: 'Users', exact: true });
    const audit = admin.getByRole('region', { name: 'Audit events', exact: true });
    const userList = users.getByRole('list', { name: 'Users', exact: true });

    await field(users, 'Search users').fill(bob);
    await button(users, 'Search').click();
    await settled(userList);
    await button(users, `Disable ${bob}`).waitFor();
    assert.equal(await users.getByRole('button', { name: /^(Disable|Enable) / }).count(), 1, 'only bob matches');

    // Roles: saved, and carried by bob's token at his next refresh (a reload refreshes).
    await field(users, `Roles of ${bob}`).fill('editor, reviewer');
    await button(users, `Save roles of ${bob}`).click();
    await users.getByRole('status').filter({ hasText: `Roles of ${bob}: editor, reviewer` }).waitFor();
    await bobPage.reload();
    await bobPage.getByText('Roles: editor, reviewer', { exact: true }).waitFor();

    // Disable: bob's session ends, and he cannot sign in.
    await button(users, `Disable ${bob}`).click();
    await button(users, `Enable ${bob}`).waitFor();
    await users.getByText('disabled', { exact: true }).waitFor();
    await expectSignedOut(bobPage, /./);
    await field(bobPage, 'Username').fill(bob);
    await field(bobPage, 'Password').fill(PASSWORD);
    await button(bobPage, 'Sign in').click();
    const disabled = await apiMessage('POST', '/auth/login', { username: bob, password: PASSWORD });
    await bobPage.getByRole('alert').filter({ hasText: disabled }).waitFor();
    assert.equal(await bobPage.getByText(`Signed in as ${bob}`).count(), 0);

    // Enable: he can again.
    await button(users, `Enable ${bob}`).click();
    await button(users, `Disable ${bob}`).waitFor();
    await signIn(bobPage, bob, PASSWORD);

    // His sessions, listed and then ended.
    await button(users, `Show sessions of ${bob}`).click();
    await users.getByRole('list', { name: `Sessions of ${bob}` }).getByRole('listitem').first().waitFor();
    await button(users, `End sessions of ${bob}`).click();
    await users.getByRole('status').filter({ hasText: `Every session of ${bob} ended.` }).waitFor();
    await users.getByText('0 active sessions').waitFor();
    await expectSignedOut(bobPage, /Your session was ended/);

    // A reset link to hand over: one-time, under the public URL.
    await button(users, `Reset link for ${bob}`).click();
    const resetUrl = await field(users, `Reset URL for ${bob}`).inputValue();
    assert.ok(resetUrl.startsWith(`${base}/#reset-password=`), resetUrl);
    await bobPage.goto(resetUrl);
    await field(bobPage, 'New password').fill(NEW_PASSWORD);
    await button(bobPage, 'Set new password').click();
    await bobPage.getByRole('status').filter({ hasText: 'Your password was changed' }).waitFor();
    await signIn(bobPage, bob, NEW_PASSWORD);

    // The audit list shows all of it for bob.
    await field(audit, 'Events of user').fill(bob);
    const events = audit.getByRole('list', { name: 'Audit events' });
    await button(audit, 'Show events').click();
    await settled(events);
    for (const event of ['user.registered', 'user.roles_changed', 'user.disabled', 'user.enabled', 'session.revoked', 'password.reset']) {
      await events.getByRole('listitem').filter({ hasText: new RegExp(`^${event.replace('.', '\\.')}(?![._a-z])`) }).first().waitFor();
    }
    assert.equal(await events.getByRole('listitem').filter({ hasNotText: bob }).count(), 0, 'only bob’s events');
    // Filtered by event too.
    await field(audit, 'Event name').fill('user.disabled');
    await button(audit, 'Show events').click();
    await settled(events);
    assert.deepEqual(await events.getByRole('listitem').allTextContents().then((rows) => rows.map((r) => r.split(' ')[0])), ['user.disabled']);

    // Everyone's events, a page at a time: the same pages the API gives.
    const adminToken = (await t.call('POST', '/auth/login', { body: { username: adminName, password: PASSWORD } })).body.access_token as string;
    const adminId = (await t.call('GET', '/auth/me', { token: adminToken })).body.id as string;
    await field(audit, 'Events of user').fill('');
    await field(audit, 'Event name').fill('');
    await button(audit, 'Show events').click();
    await button(audit, 'Next page').waitFor();
    await settled(events);
    type Event = { event: string; username: string | null };
    const apiPage1 = (await t.call('GET', '/admin/audit?limit=20', { token: adminToken })).body as { events: Event[]; next: string };
    const apiPage2 = (await t.call('GET', `/admin/audit?limit=20&before=${apiPage1.next}`, { token: adminToken })).body as { events: Event[] };
    const shown = async () => (await events.getByRole('listitem').allTextContents()).map((text) => text.split(' ').slice(0, 2).join(' '));
    const expected = (page: { events: Event[] }) => page.events.map((e) => `${e.event} ${e.username ?? 'no'}`);
    assert.deepEqual(await shown(), expected(apiPage1));
    await button(audit, 'Next page').click();
    await button(audit, 'First page').waitFor();
    await settled(events);
    assert.deepEqual(await shown(), expected(apiPage2));
    await button(audit, 'First page').click();
    await button(audit, 'First page').waitFor({ state: 'detached' });
    await settled(events);
    assert.deepEqual(await shown(), expected(apiPage1));

    // The admin's own row: the server refuses to drop their admin role or disable them.
    await field(users, 'Search users').fill(adminName);
    await button(users, 'Search').click();
    await settled(userList);
    await button(users, `Disable ${adminName}`).click();
    const noSelfDisable = await apiMessage('PATCH', `/admin/users/${adminId}`, { disabled: true }, adminToken);
    await users.getByRole('alert').filter({ hasText: noSelfDisable }).waitFor();
    await button(users, `Disable ${adminName}`).waitFor();
    await field(users, `Roles of ${adminName}`).fill('editor');
    await button(users, `Save roles of ${adminName}`).click();
    const noSelfDemotion = await apiMessage('PATCH', `/admin/users/${adminId}`, { roles: ['editor'] }, adminToken);
    await users.getByRole('alert').filter({ hasText: noSelfDemotion }).waitFor();
    const login = await t.call('POST', '/auth/login', { body: { username: adminName, password: PASSWORD } });
    assert.equal(login.status, 200, 'the admin is still enabled');
    assert.deepEqual((await t.call('GET', '/auth/me', { token: login.body.access_token })).body.roles, ['admin']);

    const storage = await page.evaluate(() => localStorage.length + sessionStorage.length);
    assert.equal(storage, 0, 'cookie mode: nothing in web storage');
    await bobContext.close();
    await context.close();
  });

  test('admin: users a page at a time (Next page, First page)', async () => {
    const adminName = uniqueName('admin');
    await runAdminOperation(t.server.context, { op: 'user.add', username: adminName, password: PASSWORD, roles: ['admin'] });
    const prefix = `pg${process.pid}n`;
    for (let i = 10; i < 22; i += 1) {
      const reg = await t.call('POST', '/auth/register', { body: { username: `${prefix}${i}`, password: PASSWORD } });
      assert.equal(reg.status, 201, JSON.stringify(reg.body));
    }
    const context = await newContext();
    const page = await open(context);
    await signIn(page, adminName, PASSWORD);
    const users = page.getByRole('region', { name: 'Admin', exact: true }).getByRole('region', { name: 'Users', exact: true });
    const rows = users.getByRole('button', { name: /^(Disable|Enable) / });
    const list = users.getByRole('list', { name: 'Users', exact: true });
    await field(users, 'Search users').fill(prefix);
    await button(users, 'Search').click();
    await button(users, 'Next page').waitFor();
    await settled(list);
    assert.equal(await rows.count(), 10);
    const names1 = await Promise.all((await rows.all()).map((r) => r.getAttribute('aria-label')));
    await button(users, 'Next page').click();
    await button(users, 'First page').waitFor();
    await settled(list);
    await button(users, 'Next page').waitFor({ state: 'detached' });
    assert.equal(await rows.count(), 2);
    const names2 = await Promise.all((await rows.all()).map((r) => r.getAttribute('aria-label')));
    assert.equal(new Set([...names1, ...names2]).size, 12, 'every user once');
    await button(users, 'First page').click();
    await button(users, 'Next page').waitFor();
    await settled(list);
    assert.equal(await rows.count(), 10);
    await context.close();
  });

  test('a user without the role admin sees no Admin section, and the admin API answers 403 forbidden', async () => {
    const context = await newContext();
    const page = await open(context);
    const username = await createAccount(page);
    await button(page, 'Call API').click();
    await page.getByTestId('api-result').filter({ hasText: /^200 / }).waitFor();
    assert.equal(await page.getByRole('region', { name: 'Admin', exact: true }).count(), 0);
    assert.equal(await page.getByText('Audit events').count(), 0);
    // The page's own token is bound to its key (DPoP): ask with a bearer token of the same user.
    const token = (await t.call('POST', '/auth/login', { body: { username, password: PASSWORD } })).body.access_token as string;
    for (const path of ['/admin/users', '/admin/audit']) {
      const answer = await t.call('GET', path, { token });
      assert.equal(answer.status, 403);
      assert.equal(answer.body.error, 'forbidden');
      assert.ok(answer.body.message);
    }
    await context.close();
  });

  test('no uncaught page error in any of the above', () => {
    assert.deepEqual(pageErrors, []);
  });
});
