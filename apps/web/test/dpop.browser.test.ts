import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { type Browser, chromium, type Page } from 'playwright-core';
import { startTestServer, type TestServer, uniqueName } from '../../../test/support/test_server.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--headless', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const WEB_ROOT = new URL('../dist', import.meta.url).pathname;
const PASSWORD = 'a long enough password';

/** What the page's IndexedDB holds for DPoP: the key pair as CryptoKeys, and what script can learn of them. */
function readStoredKey(page: Page) {
  return page.evaluate(async () => {
    const db = await new Promise<IDBDatabase>((resolve, reject) => {
      const open = indexedDB.open('tessera-dpop');
      open.onsuccess = () => resolve(open.result);
      open.onerror = () => reject(open.error);
    });
    const pair = await new Promise<CryptoKeyPair | undefined>((resolve, reject) => {
      const keys = db.transaction('keys', 'readonly').objectStore('keys');
      const all = keys.getAll();
      all.onsuccess = () => resolve(all.result[0] as CryptoKeyPair | undefined);
      all.onerror = () => reject(all.error);
    });
    db.close();
    if (!pair) return null;
    const exported = await crypto.subtle.exportKey('jwk', pair.privateKey).then(
      () => 'exported',
      (error: Error) => error.name,
    );
    const jwk = await crypto.subtle.exportKey('jwk', pair.publicKey);
    return {
      isCryptoKey: pair.privateKey instanceof CryptoKey,
      extractable: pair.privateKey.extractable,
      algorithm: (pair.privateKey.algorithm as EcKeyAlgorithm).namedCurve,
      exportPrivate: exported,
      x: jwk.x,
    };
  });
}

describe('DPoP in the browser: the web app binds its session to a key the page cannot export', () => {
  let t: TestServer;
  let browser: Browser;
  let base: string;
  const pageErrors: string[] = [];

  before(async () => {
    assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}`);
    assert.ok(existsSync(`${WEB_ROOT}/index.html`), 'the web app is built (npm run build)');
    t = await startTestServer({ webRoot: WEB_ROOT });
    base = t.url.replace('127.0.0.1', 'localhost');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });
  after(async () => {
    await browser?.close();
    await t?.close();
  });

  test('a non-extractable P-256 key in IndexedDB; the session is bound to it; it survives a reload and two tabs share it; refresh and API calls work', async () => {
    const context = await browser.newContext();
    context.on('page', (page) => page.on('pageerror', (error) => pageErrors.push(error.message)));
    await context.route('http://localhost:4001/**', (route) => route.abort());
    const page = await context.newPage();
    await page.goto(`${base}/`);
    const username = uniqueName('dpop');
    await page.getByLabel('Username', { exact: true }).fill(username);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    const login = page.waitForRequest((request) => request.url().endsWith('/auth/login') && request.headers().dpop !== undefined);
    await page.getByRole('button', { name: 'Create account', exact: true }).click();
    await page.getByText(`Signed in as ${username}`).waitFor();
    assert.ok((await login).headers().dpop, 'the login carried a proof');

    const stored = await readStoredKey(page);
    assert.ok(stored, 'a key pair is in IndexedDB');
    assert.equal(stored.isCryptoKey, true);
    assert.equal(stored.extractable, false);
    assert.equal(stored.algorithm, 'P-256');
    assert.equal(stored.exportPrivate, 'InvalidAccessError', 'the private key cannot be exported, even by the page');

    const user = await t.server.context.store.users.findByUsername(username);
    const [session] = await t.server.context.store.sessions.listActive(user!.id, new Date(t.clock.now()));
    assert.ok(session?.dpopJkt, 'the server bound the session');
    await page.getByText('bound to its device key').waitFor();

    // Calls and a refresh (the access token expired meanwhile).
    const api = page.waitForRequest((request) => request.url().endsWith('/auth/me') && request.headers().authorization?.startsWith('DPoP ') === true);
    await page.getByRole('button', { name: 'Call API' }).click();
    const sent = await api;
    assert.ok(sent.headers().dpop, 'a proof with every call');
    await page.getByTestId('api-result').filter({ hasText: /^200 / }).waitFor();
    t.clock.advance(15 * 60 + 10);
    await page.getByRole('button', { name: 'Call API' }).click();
    await page.getByTestId('api-result').filter({ hasText: /^200 .*\(call 2,/ }).waitFor();

    // A reload keeps the key and the session; a second tab uses the same key.
    await page.reload();
    await page.getByText(`Signed in as ${username}`).waitFor();
    assert.equal((await readStoredKey(page))?.x, stored.x, 'the same key after a reload');
    const second = await context.newPage();
    await second.goto(`${base}/`);
    await second.getByText(`Signed in as ${username}`).waitFor();
    assert.equal((await readStoredKey(second))?.x, stored.x, 'the same key in another tab');
    await second.getByRole('button', { name: 'Call API' }).click();
    await second.getByTestId('api-result').filter({ hasText: /^200 / }).waitFor();
    const live = await t.server.context.store.sessions.listActive(user!.id, new Date(t.clock.now()));
    assert.equal(live.length, 1, 'still the one bound session');
    assert.equal(live[0]!.dpopJkt, session.dpopJkt);
    await context.close();
  });

  test('the refresh cookie alone is worthless: a request that carries it but no proof is refused and changes nothing', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base}/`);
    const username = uniqueName('dpop');
    await page.getByLabel('Username', { exact: true }).fill(username);
    await page.getByLabel('Password', { exact: true }).fill(PASSWORD);
    await page.getByRole('button', { name: 'Create account', exact: true }).click();
    await page.getByText(`Signed in as ${username}`).waitFor();
    // An injected script (or a stolen cookie replayed from elsewhere) posting to /auth/refresh without the key's proof.
    const stolen = await page.evaluate(async () => {
      const res = await fetch('/auth/refresh', { method: 'POST', credentials: 'include' });
      return { status: res.status, body: (await res.json()) as { error?: string } };
    });
    assert.equal(stolen.status, 401);
    assert.equal(stolen.body.error, 'invalid_dpop_proof');
    await page.reload();
    await page.getByText(`Signed in as ${username}`).waitFor();
    await context.close();
  });

  test('no uncaught page error', () => {
    assert.deepEqual(pageErrors, []);
  });
});
