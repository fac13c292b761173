import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import { type Browser, type BrowserContext, type CDPSession, chromium, type Locator, type Page } from 'playwright-core';
import { startTestServer, type TestServer, uniqueName } from '../../../test/support/test_server.js';

/** Debian's Chromium; these flags keep it from stalling on this closed network. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WEB_ROOT = new URL('../dist', import.meta.url).pathname;
const PASSWORD = 'a long enough password';

/** A port free right now: the public URL (the passkeys' relying party) must be known before the server starts. */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  await new Promise((resolve) => server.close(resolve));
  if (typeof address !== 'object' || !address) throw new Error('no port');
  return address.port;
}

describe('the Security section in a real browser: authenticator app, recovery codes, passkeys', () => {
  let t: TestServer;
  let browser: Browser;
  let base: string;
  const pageErrors: string[] = [];

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (.ci/run installs Debian's chromium)`);
    assert.ok(existsSync(`${WEB_ROOT}/index.html`), 'the web app is built (npm run build)');
    const port = await freePort();
    base = `http://localhost:${port}`;
    t = await startTestServer({ webRoot: WEB_ROOT, port, publicUrl: base });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await t?.close();
  });

  async function newContext(): Promise<BrowserContext> {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    context.on('page', (page) => page.on('pageerror', (error) => pageErrors.push(error.message)));
    await context.route('http://localhost:4001/**', (route) => route.abort());
    return context;
  }
  async function open(context: BrowserContext): Promise<Page> {
    const page = await context.newPage();
    await page.goto(`${base}/`);
    return page;
  }
  const field = (scope: Page | Locator, label: string) => scope.getByLabel(label, { exact: true });
  const button = (scope: Page | Locator, name: string) => scope.getByRole('button', { name, exact: true });
  const security = (page: Page) => page.getByRole('region', { name: 'Security' });
  /** The code an authenticator app shows now, by the server's (test) clock, `steps` steps away. */
  const totp = (secret: string, steps = 0) => TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: t.clock.now() + steps * 30_000 });

  async function createAccount(page: Page): Promise<string> {
    const username = uniqueName('sec');
    await field(page, 'Username').fill(username);
    await field(page, 'Password').fill(PASSWORD);
    await button(page, 'Create account').click();
    await page.getByText(`Signed in as ${username}`).waitFor();
    return username;
  }
  async function signInWithPassword(page: Page, username: string): Promise<void> {
    await field(page, 'Username').fill(username);
    await field(page, 'Password').fill(PASSWORD);
    await button(page, 'Sign in').click();
  }
  /** A platform authenticator with user verification, as the DevTools protocol emulates it. */
  async function virtualAuthenticator(page: Page): Promise<{ cdp: CDPSession; authenticatorId: string }> {
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('WebAuthn.enable');
    const { authenticatorId } = await cdp.send('WebAuthn.addVirtualAuthenticator', {
      options: { protocol: 'ctap2', transport: 'internal', hasResidentKey: true, hasUserVerification: true, isUserVerified: true, automaticPresenceSimulation: true },
    });
    return { cdp, authenticatorId };
  }

  test('set up an authenticator app from the QR code page; recovery codes shown once; sign-in then asks for a Code', async () => {
    const context = await newContext();
    const page = await open(context);
    const username = await createAccount(page);
    const section = security(page);
    assert.equal(await page.getByLabel('Password').count(), 0, 'a signed-in page shows no password field until asked');
    await button(section, 'Set up authenticator app').click();
    await section.getByRole('img', { name: 'QR code for your authenticator app' }).waitFor();
    const qr = await section.getByRole('img', { name: 'QR code for your authenticator app' }).getAttribute('src');
    assert.match(qr ?? '', /^data:image\/png;base64,/);
    const secret = ((await section.getByTestId('totp-secret').textContent()) ?? '').trim();
    assert.match(secret, /^[A-Z2-7]{32}$/);

    await field(section, 'Code').fill('000000');
    await button(section, 'Turn on').click();
    await section.getByRole('alert').waitFor();
    await field(section, 'Code').fill(totp(secret));
    await button(section, 'Turn on').click();
    const codes = section.getByRole('list', { name: 'Recovery codes' }).getByRole('listitem');
    await codes.first().waitFor();
    const recovery = (await codes.allTextContents()).map((c) => c.trim());
    assert.equal(recovery.length, 10);
    assert.ok(recovery.every((c) => /^[a-z2-7]{4}(-[a-z2-7]{4}){3}$/.test(c)), recovery.join(' '));
    await button(section, 'I saved them').click();
    await section.getByTestId('totp-status').filter({ hasText: '10 recovery codes left' }).waitFor();
    assert.equal(await section.getByRole('list', { name: 'Recovery codes' }).count(), 0, 'shown once');

    // The password alone no longer signs in: the page asks for a Code.
    t.clock.advance(30);
    await button(page, 'Sign out').click();
    await signInWithPassword(page, username);
    await field(page, 'Code').fill('123456');
    await button(page, 'Verify').click();
    await page.getByRole('alert').filter({ hasText: /code/i }).waitFor();
    await field(page, 'Code').fill(totp(secret));
    await button(page, 'Verify').click();
    await page.getByText(`Signed in as ${username}`).waitFor();

    // A recovery code works once.
    await button(page, 'Sign out').click();
    await signInWithPassword(page, username);
    await field(page, 'Code').fill(recovery[0]!);
    await button(page, 'Verify').click();
    await page.getByText(`Signed in as ${username}`).waitFor();
    await security(page).getByTestId('totp-status').filter({ hasText: '9 recovery codes left' }).waitFor();
    await button(page, 'Sign out').click();
    await signInWithPassword(page, username);
    await field(page, 'Code').fill(recovery[0]!);
    await button(page, 'Verify').click();
    await page.getByRole('alert').waitFor();
    assert.equal(await page.getByText(`Signed in as ${username}`).count(), 0, 'a used recovery code is refused');

    // Turned off with a code: the password alone signs in again.
    t.clock.advance(30);
    await field(page, 'Code').fill(totp(secret));
    await button(page, 'Verify').click();
    await page.getByText(`Signed in as ${username}`).waitFor();
    t.clock.advance(30);
    await button(security(page), 'Turn off authenticator app').click();
    await field(security(page), 'A current code, a recovery code or your password').fill(totp(secret));
    await button(security(page), 'Confirm turning it off').click();
    await button(security(page), 'Set up authenticator app').waitFor();
    await button(page, 'Sign out').click();
    await signInWithPassword(page, username);
    await page.getByText(`Signed in as ${username}`).waitFor();
    await context.close();
  });

  test('a passkey for real (the DevTools virtual authenticator): add, listed, sign in without a password, rename, remove', async () => {
    const context = await newContext();
    const page = await open(context);
    const { cdp, authenticatorId } = await virtualAuthenticator(page);
    const username = await createAccount(page);
    const section = security(page);
    await field(section, 'Passkey name (optional)').fill('This laptop');
    await button(section, 'Add a passkey').click();
    await section.getByRole('status').filter({ hasText: 'Passkey "This laptop" added.' }).waitFor();
    const list = section.getByRole('list', { name: 'Your passkeys' });
    await list.getByText('This laptop').waitFor();
    const { credentials } = await cdp.send('WebAuthn.getCredentials', { authenticatorId });
    assert.equal(credentials.length, 1);
    assert.equal(credentials[0]!.isResidentCredential, true, 'discoverable: no name to type at sign-in');

    await button(page, 'Sign out').click();
    await button(page, 'Sign in with a passkey').click();
    await page.getByText(`Signed in as ${username}`).waitFor();
    const sessions = await page.evaluate(async () => (await fetch('/auth/sessions')).status);
    assert.equal(sessions, 401, 'no token reachable by script: the page signed in through the client');

    await button(security(page), 'Rename This laptop').click();
    await field(security(page), 'New name for This laptop').fill('Work laptop');
    await button(security(page), 'Save name').click();
    await security(page).getByRole('list', { name: 'Your passkeys' }).getByText('Work laptop').waitFor();
    assert.match((await security(page).getByRole('list', { name: 'Your passkeys' }).textContent()) ?? '', /last used (?!never)/, 'its sign-in is recorded');

    await button(security(page), 'Remove Work laptop').click();
    await security(page).getByText('No passkeys yet.').waitFor();
    await button(page, 'Sign out').click();
    await button(page, 'Sign in with a passkey').click();
    await page.getByRole('alert').waitFor();
    assert.equal(await page.getByText(`Signed in as ${username}`).count(), 0, 'a removed passkey signs in no more');
    await context.close();
  });

  test('adding a passkey from a session that signed in over 10 minutes ago asks for the password first', async () => {
    const context = await newContext();
    const page = await open(context);
    await virtualAuthenticator(page);
    await createAccount(page);
    t.clock.advance(11 * 60);
    const section = security(page);
    await button(section, 'Add a passkey').click();
    await field(section, 'Your password, to add a passkey').fill(PASSWORD);
    await button(section, 'Add a passkey').click();
    await section.getByRole('status').filter({ hasText: 'added' }).waitFor();
    await context.close();
  });

  test('the session list says which sessions are bound to their device key', async () => {
    const context = await newContext();
    const page = await open(context);
    const username = await createAccount(page);
    await page.getByText('This device').waitFor();
    const badge = await page.getByText('bound to its device key').count();
    const user = await t.server.context.store.users.findByUsername(username);
    const sessions = await t.server.context.store.sessions.listActive(user!.id, new Date(t.clock.now()));
    assert.equal(badge, sessions.filter((s) => s.dpopJkt !== null).length, 'the badge shows exactly on the sessions the server bound');
    await context.close();
  });

  test('Change password from the Security section: other sessions end, the new password signs in', async () => {
    const context = await newContext();
    const page = await open(context);
    const username = await createAccount(page);
    await button(security(page), 'Change password').click();
    await field(security(page), 'Current password').fill(PASSWORD);
    await field(security(page), 'New password').fill('a brand new passphrase');
    await button(security(page), 'Save new password').click();
    await security(page).getByRole('status').filter({ hasText: 'Password changed' }).waitFor();
    await button(page, 'Sign out').click();
    await field(page, 'Username').fill(username);
    await field(page, 'Password').fill('a brand new passphrase');
    await button(page, 'Sign in').click();
    await page.getByText(`Signed in as ${username}`).waitFor();
    await context.close();
  });

  test('no uncaught page error in any of the above', () => {
    assert.deepEqual(pageErrors, []);
  });
});
