import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { buildBusinessApi } from '@tessera/example-business-api';
import { type Browser, type BrowserContext, chromium, type Page } from 'playwright-core';
import { startTestServer, type TestServer, uniqueName } from '../../../test/support/test_server.js';

/** Debian's Chromium; these flags keep it from stalling on this closed network. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WEB_ROOT = new URL('../dist', import.meta.url).pathname;

describe('the web app in a real browser', () => {
  let t: TestServer;
  let browser: Browser;
  let base: string;
  const pageErrors: string[] = [];

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM} (.ci/run installs Debian's chromium)`);
    assert.ok(existsSync(`${WEB_ROOT}/index.html`), 'the web app is built (npm run build)');
    // A revocation-feed heartbeat every second: the business API's feed must keep up with the moved clock.
    t = await startTestServer({ webRoot: WEB_ROOT, feedHeartbeat: 1 });
    base = t.url.replace('127.0.0.1', 'localhost');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await t?.close();
  });

  async function newContext(): Promise<BrowserContext> {
    const context = await browser.newContext({ viewport: { width: 390, height: 844 } });
    context.on('page', (page) => watch(page));
    return context;
  }
  function watch(page: Page): void {
    page.on('pageerror', (error) => pageErrors.push(error.message));
  }
  async function open(context: BrowserContext): Promise<Page> {
    const page = await context.newPage();
    await page.goto(`${base}/`);
    return page;
  }
  async function createAccount(page: Page): Promise<string> {
    const username = uniqueName('web');
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password').fill('a long enough password');
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.getByText(`Signed in as ${username}`).waitFor();
    return username;
  }
  async function callApi(page: Page): Promise<string> {
    const result = page.getByTestId('api-result');
    const before = await result.textContent();
    await page.getByRole('button', { name: 'Call API' }).click();
    await page.waitForFunction((previous) => document.querySelector('[data-testid="api-result"]')?.textContent !== previous, before);
    return (await result.textContent()) ?? '';
  }

  test('create account signs in; sign in with a wrong password shows an alert', async () => {
    const context = await newContext();
    const page = await open(context);
    const started = performance.now();
    const username = await createAccount(page);
    const signInMs = performance.now() - started;
    await page.getByRole('button', { name: 'Sign out' }).click();
    await page.getByLabel('Username').fill(username);
    await page.getByLabel('Password').fill('not the password');
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await assert.doesNotReject(page.getByRole('alert').filter({ hasText: 'Invalid username or password.' }).waitFor());
    await page.getByLabel('Password').fill('a long enough password');
    const again = performance.now();
    await page.getByRole('button', { name: 'Sign in', exact: true }).click();
    await page.getByText(`Signed in as ${username}`).waitFor();
    console.log(`# create account -> signed in: ${signInMs.toFixed(0)} ms; Sign in -> "Signed in as": ${(performance.now() - again).toFixed(0)} ms`);
    await context.close();
  });

  test('Call API works, and still works after the access token expired, with no login form', async () => {
    const context = await newContext();
    const page = await open(context);
    await createAccount(page);
    assert.match(await callApi(page), /^200 /);
    const refreshes: string[] = [];
    page.on('request', (request) => {
      if (request.url().endsWith('/auth/refresh')) refreshes.push(request.url());
    });
    t.clock.advance(15 * 60 + 10);
    const text = await callApi(page);
    assert.match(text, /^200 /);
    assert.equal(refreshes.length, 1, 'one silent refresh');
    assert.equal(await page.getByLabel('Password').count(), 0, 'no login form');
    await context.close();
  });

  test('the business API on :4001, another origin listed in apiOrigins, gets the token and a silent refresh', async () => {
    // Port 4001 itself may be taken (npm start): the browser's requests to it are
    // answered by a real business API on a free port, verifying this server's tokens.
    const { issuer } = (await (await fetch(`${t.url}/.well-known/openid-configuration`)).json()) as { issuer: string };
    const api = await buildBusinessApi({ issuer, authUrl: t.url, clock: t.clock.now, corsOrigins: [base], publicUrl: 'http://localhost:4001' });
    await api.listen({ port: 0, host: '127.0.0.1' });
    const address = api.server.address();
    const apiUrl = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
    const context = await newContext();
    try {
      const sent: { path: string; authorization: string | undefined }[] = [];
      await context.route('http://localhost:4001/**', async (route) => {
        const url = new URL(route.request().url());
        const authorization = route.request().headers().authorization;
        if (route.request().method() !== 'OPTIONS') sent.push({ path: url.pathname, authorization });
        await route.fulfill({ response: await route.fetch({ url: apiUrl + url.pathname + url.search }) });
      });
      const page = await open(context);
      const username = await createAccount(page);
      await page.getByText('Calls localhost:4001/api/profile').waitFor();
      const first = await callApi(page);
      assert.match(first, /^200 .* from localhost:4001\/api\/profile/);
      assert.match(first, new RegExp(`"username": "${username}"`));
      assert.match(sent.at(-1)?.authorization ?? '', /^DPoP eyJ/, 'the access token went to the listed origin, bound to the browser’s key');
      // Refreshes that went through: the test's clock jumps 15 minutes, so the first proof
      // after the jump may be refused for its iat and made again at once (the auth server's
      // Date header says the new time), which is one refresh, not two.
      const refreshes: string[] = [];
      page.on('response', (response) => {
        if (response.url().endsWith('/auth/refresh') && response.status() === 200) refreshes.push(response.url());
      });
      t.clock.advance(15 * 60 + 10);
      // The API's revocation feed runs on the same (moved) clock: let one heartbeat arrive.
      await new Promise((resolve) => setTimeout(resolve, 1200));
      assert.match(await callApi(page), /^200 .* from localhost:4001\/api\/profile/);
      assert.equal(refreshes.length, 1, 'one silent refresh after the API said token_expired');
      assert.deepEqual(sent.filter((r) => r.path === '/api/public').map((r) => r.authorization), [undefined], 'the page’s own probe carries no token');
    } finally {
      await context.close();
      await api.close();
    }
  });

  test('a reload keeps the session (httpOnly cookie), and no token is readable by script or in web storage', async () => {
    const context = await newContext();
    const page = await open(context);
    const username = await createAccount(page);
    await page.reload();
    await page.getByText(`Signed in as ${username}`).waitFor();
    const exposed = await page.evaluate(() => ({
      cookie: document.cookie,
      local: JSON.stringify({ ...localStorage }),
      session: JSON.stringify({ ...sessionStorage }),
    }));
    assert.ok(!exposed.cookie.includes('tessera_refresh'), 'the refresh cookie is httpOnly');
    assert.ok(!/eyJ/.test(exposed.cookie + exposed.local + exposed.session), 'no JWT in document.cookie or web storage');
    assert.equal(exposed.local, '{}');
    assert.equal(exposed.session, '{}');
    const cookies = await context.cookies();
    const refresh = cookies.find((c) => c.name === 'tessera_refresh');
    assert.ok(refresh?.httpOnly && refresh.sameSite === 'Strict' && refresh.path === '/auth');
    await context.close();
  });

  test('two tabs calling at once after expiry both succeed, and the session survives', async () => {
    const context = await newContext();
    const one = await open(context);
    const username = await createAccount(one);
    const two = await open(context);
    await two.getByText(`Signed in as ${username}`).waitFor();
    t.clock.advance(15 * 60 + 10);
    const [a, b] = await Promise.all([callApi(one), callApi(two)]);
    assert.match(a, /^200 /);
    assert.match(b, /^200 /);
    t.clock.advance(15 * 60 + 10);
    assert.match(await callApi(two), /^200 /, 'the session was not ended as a reuse');
    await context.close();
  });

  test('sign out in one tab signs out the other', async () => {
    const context = await newContext();
    const one = await open(context);
    const username = await createAccount(one);
    const two = await open(context);
    await two.getByText(`Signed in as ${username}`).waitFor();
    await one.getByRole('button', { name: 'Sign out' }).click();
    await one.getByLabel('Username').waitFor();
    await two.getByLabel('Username').waitFor();
    await two.getByText('You signed out in another tab.').waitFor();
    await two.reload();
    await two.getByLabel('Username').waitFor();
    await context.close();
  });

  test('when the session is over (signed out everywhere elsewhere), the next call lands on the login page with why', async () => {
    const context = await newContext();
    const page = await open(context);
    const username = await createAccount(page);
    const other = await t.call('POST', '/auth/login', { body: { username, password: 'a long enough password' } });
    await t.call('POST', '/auth/logout-all', { token: other.body.access_token });
    t.clock.advance(15 * 60 + 10);
    await page.getByRole('button', { name: 'Call API' }).click();
    await page.getByLabel('Username').waitFor();
    await page.getByText(/Your session was ended/).waitFor();
    await context.close();
  });

  test('no uncaught page error in any of the above', () => {
    assert.deepEqual(pageErrors, []);
  });
});
