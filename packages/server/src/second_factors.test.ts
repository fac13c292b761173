import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { decodeJwt } from 'jose';
import { Secret, TOTP } from 'otpauth';
import { captureLogs } from '../../../test/support/log_capture.js';
import { signUp, startTestServer, type TestServer } from '../../../test/support/test_server.js';

const STEP = 30;

describe('an authenticator app (TOTP) and recovery codes', () => {
  let t: TestServer;
  const logs = captureLogs();
  before(async () => {
    t = await startTestServer({ log: 'info', logStream: logs.stream, rateLimit: 'ip=100000/1m,user=8/15m' });
  });
  after(() => t?.close());

  /** A code of the user's secret for the server's clock, `steps` steps away. */
  const code = (secret: string, steps = 0) => TOTP.generate({ secret: Secret.fromBase32(secret), timestamp: t.clock.now() + steps * STEP * 1000 });

  /** A user with a confirmed authenticator app; returns its secret and recovery codes. */
  async function enrolled() {
    const user = await signUp(t);
    const start = await t.call('POST', '/auth/mfa/totp', { token: user.pair.access_token });
    assert.equal(start.status, 200);
    const confirm = await t.call('POST', '/auth/mfa/totp/confirm', { token: user.pair.access_token, body: { code: code(start.body.secret) } });
    assert.equal(confirm.status, 200, JSON.stringify(confirm.body));
    t.clock.advance(STEP); // the confirming code's step is used: the next login needs the next one
    return { ...user, secret: start.body.secret as string, recoveryCodes: confirm.body.recovery_codes as string[] };
  }

  async function mfaToken(user: { username: string; password: string }): Promise<string> {
    const res = await t.call('POST', '/auth/login', { body: { username: user.username, password: user.password } });
    assert.equal(res.status, 401);
    assert.equal(res.body.error, 'mfa_required');
    assert.deepEqual(res.body.methods, ['totp', 'recovery_code']);
    assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm/, 'not invalid_token: a client must not refresh on it');
    return res.body.mfa_token;
  }

  test('enrolment: an otpauth:// URI (issuer, account, SHA-1, 6 digits, 30 s); nothing changes until a correct code; then ten recovery codes', async () => {
    const user = await signUp(t);
    const start = await t.call('POST', '/auth/mfa/totp', { token: user.pair.access_token });
    const uri = new URL(start.body.otpauth_uri);
    assert.equal(uri.protocol, 'otpauth:');
    assert.equal(uri.host, 'totp');
    assert.equal(decodeURIComponent(uri.pathname), `/Tessera:${user.username}`);
    assert.deepEqual(Object.fromEntries(uri.searchParams), { issuer: 'Tessera', secret: start.body.secret, algorithm: 'SHA1', digits: '6', period: '30' });
    assert.equal(Secret.fromBase32(start.body.secret).bytes.length, 20);
    // Not confirmed: the password alone still signs in.
    assert.equal((await t.call('POST', '/auth/login', { body: { username: user.username, password: user.password } })).status, 200);
    const wrong = await t.call('POST', '/auth/mfa/totp/confirm', { token: user.pair.access_token, body: { code: '000000' === code(start.body.secret) ? '111111' : '000000' } });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.body.error, 'invalid_code');
    assert.equal((await t.call('POST', '/auth/login', { body: { username: user.username, password: user.password } })).status, 200);
    const confirmed = await t.call('POST', '/auth/mfa/totp/confirm', { token: user.pair.access_token, body: { code: code(start.body.secret) } });
    assert.equal(confirmed.status, 200);
    assert.equal(confirmed.body.recovery_codes.length, 10);
    assert.equal(new Set(confirmed.body.recovery_codes).size, 10);
    for (const c of confirmed.body.recovery_codes) assert.match(c, /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/);
    assert.equal((await t.call('POST', '/auth/mfa/totp', { token: user.pair.access_token })).status, 400, 'one app at a time');
    const rows = await t.server.context.store.audit.list({ userId: user.userId, event: 'mfa.enabled', limit: 2 });
    assert.equal(rows.length, 1);
    const stored = await t.server.context.store.db.query<{ code_hash: string }>('SELECT code_hash FROM recovery_codes WHERE user_id = $1', [user.userId]);
    assert.equal(stored.rows.length, 10);
    for (const c of confirmed.body.recovery_codes) assert.ok(!stored.rows.some((r) => r.code_hash.includes(c.replaceAll('-', ''))), 'hashes only');
  });

  test('a session that signed in over 10 minutes ago needs the password to set one up: a thief with an old session cannot lock the owner out', async () => {
    const user = await signUp(t);
    t.clock.advance(11 * 60);
    const { access_token: token } = (await t.call('POST', '/auth/refresh', { body: { refresh_token: user.pair.refresh_token } })).body;
    for (const body of [undefined, { current_password: 'not it at all' }]) {
      const refused = await t.call('POST', '/auth/mfa/totp', { token, ...(body ? { body } : {}) });
      assert.equal(refused.status, 401, JSON.stringify(refused.body));
      assert.equal(refused.body.error, 'invalid_credentials');
    }
    const start = await t.call('POST', '/auth/mfa/totp', { token, body: { current_password: user.password } });
    assert.equal(start.status, 200, JSON.stringify(start.body));
    const failures = await t.server.context.store.audit.list({ userId: user.userId, event: 'mfa.failed', limit: 5 });
    assert.deepEqual(failures.map((e) => e.reason), ['wrong_current_password', 'current_password_missing']);
  });

  test('GET /auth/mfa says whether the app is on and how many recovery codes are left', async () => {
    const plain = await signUp(t);
    assert.deepEqual((await t.call('GET', '/auth/mfa', { token: plain.pair.access_token })).body, { totp: false, recovery_codes_left: 0 });
    const user = await enrolled();
    assert.deepEqual((await t.call('GET', '/auth/mfa', { token: user.pair.access_token })).body, { totp: true, recovery_codes_left: 10 });
    assert.equal((await t.call('GET', '/auth/mfa')).status, 401);
  });

  test('login: the password gives mfa_required; a code from the previous, current or next step signs in with amr pwd+otp; each step once', async () => {
    const user = await enrolled();
    for (const steps of [-1, 0, 1]) {
      t.clock.advance(3 * STEP);
      const token = await mfaToken(user);
      const res = await t.call('POST', '/auth/login/mfa', { body: { mfa_token: token, code: code(user.secret, steps) } });
      assert.equal(res.status, 200, `step ${steps}: ${JSON.stringify(res.body)}`);
      assert.deepEqual(decodeJwt(res.body.access_token).amr, ['pwd', 'otp']);
      const refreshed = await t.call('POST', '/auth/refresh', { token: res.body.refresh_token });
      assert.deepEqual(decodeJwt(refreshed.body.access_token).amr, ['pwd', 'otp'], 'the session keeps its amr');
    }
    t.clock.advance(3 * STEP);
    const first = await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: code(user.secret) } });
    assert.equal(first.status, 200);
    const replay = await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: code(user.secret) } });
    assert.equal(replay.status, 401);
    assert.equal(replay.body.error, 'invalid_code', 'the same code twice in one step is a replay');
    const older = await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: code(user.secret, -1) } });
    assert.equal(older.body.error, 'invalid_code', 'an earlier step after a later one is a replay too');
    assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: code(user.secret, 2) } })).body.error, 'invalid_code', 'two steps ahead');
  });

  test('recovery codes: each works once, any case and spacing, and says otp', async () => {
    const user = await enrolled();
    const [one, two] = user.recoveryCodes;
    const res = await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: ` ${one!.toUpperCase().replaceAll('-', ' ')} ` } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(decodeJwt(res.body.access_token).amr, ['pwd', 'otp']);
    assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: one } })).body.error, 'invalid_code');
    assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: two } })).status, 200);
    assert.equal(await t.server.context.store.secondFactors.unusedRecoveryCodes(user.userId), 8);
  });

  test('mfa_token misuse: as an access token, as a refresh token, twice, after five wrong codes, expired, after a password change', async () => {
    const user = await enrolled();
    const token = await mfaToken(user);
    assert.equal((await t.call('GET', '/auth/me', { token })).body.error, 'invalid_token');
    assert.equal((await t.call('POST', '/auth/refresh', { token })).body.error, 'invalid_token');
    assert.equal((await t.call('POST', '/auth/refresh', { body: { refresh_token: token } })).body.error, 'invalid_token');
    assert.equal((await t.call('POST', '/auth/logout', { token })).body.error, 'invalid_token');
    assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: token, code: code(user.secret) } })).status, 200);
    assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: token, code: code(user.secret, 1) } })).body.error, 'invalid_token', 'one success only');

    t.clock.advance(16 * 60); // the per-account failure window moves on
    const worn = await mfaToken(user);
    for (let i = 0; i < 5; i++) assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: worn, code: '000001' } })).body.error, 'invalid_code');
    t.clock.advance(STEP);
    assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: worn, code: code(user.secret) } })).body.error, 'invalid_token', 'worn out by five failures');
    const failed = await t.server.context.store.audit.list({ userId: user.userId, event: 'mfa.failed', limit: 10 });
    assert.equal(failed.length, 5);

    t.clock.advance(16 * 60);
    const late = await mfaToken(user);
    t.clock.advance(5 * 60 + 1);
    assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: late, code: code(user.secret) } })).body.error, 'invalid_token', 'five minutes');

    const stale = await mfaToken(user);
    const full = await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: user.recoveryCodes[0] } });
    await t.call('POST', '/auth/password', { token: full.body.access_token, body: { current_password: user.password, new_password: 'a changed password' } });
    t.clock.advance(STEP);
    assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: stale, code: code(user.secret) } })).body.error, 'invalid_token', 'bound to the password it followed');
    assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: randomBytes(32).toString('base64url'), code: code(user.secret) } })).body.error, 'invalid_token');
  });

  test('ten wrong codes in a row, across mfa_tokens, lock the app: its codes are refused until a recovery code or a new password', async () => {
    const user = await enrolled();
    for (let round = 0; round < 2; round++) {
      t.clock.advance(61 * 60); // past the login limits' windows
      const token = await mfaToken(user);
      for (let i = 0; i < 5; i++) assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: token, code: '000001' } })).body.error, 'invalid_code');
    }
    t.clock.advance(61 * 60);
    const locked = await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: code(user.secret) } });
    assert.equal(locked.status, 401);
    assert.equal(locked.body.error, 'invalid_code');
    assert.match(locked.body.message, /locked/);
    const recovered = await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: user.recoveryCodes[0] } });
    assert.equal(recovered.status, 200, 'a recovery code still works, and unlocks');
    t.clock.advance(STEP);
    assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: code(user.secret) } })).status, 200);

    for (let round = 0; round < 2; round++) {
      t.clock.advance(61 * 60);
      const token = await mfaToken(user);
      for (let i = 0; i < 5; i++) {
        const wrong = await t.call('POST', '/auth/login/mfa', { body: { mfa_token: token, code: '000001' } });
        assert.equal(wrong.body.error, 'invalid_code', JSON.stringify(wrong.body));
      }
    }
    t.clock.advance(61 * 60);
    const relocked = await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: code(user.secret) } });
    assert.match(relocked.body.message ?? '', /locked/, JSON.stringify(relocked.body));
    const { setPassword } = await import('./flows/user_administration.js');
    await setPassword(t.server.context, { user: { id: user.userId }, password: 'an operator’s new one', actor: { kind: 'operator' } });
    t.clock.advance(STEP);
    const again = await mfaToken({ ...user, password: 'an operator’s new one' });
    assert.equal((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: again, code: code(user.secret) } })).status, 200, 'a new password unlocks it');
  });

  test('requests racing with one mfa_token and different recovery codes: one signs in, and only its code is spent', async () => {
    const user = await enrolled();
    const token = await mfaToken(user);
    const answers = await Promise.all(user.recoveryCodes.slice(0, 3).map((c) => t.call('POST', '/auth/login/mfa', { body: { mfa_token: token, code: c } })));
    assert.deepEqual(answers.map((a) => a.status).sort(), [200, 401, 401]);
    assert.equal(await t.server.context.store.secondFactors.unusedRecoveryCodes(user.userId), 9, 'the losers’ codes still work');
  });

  test('brute force is bounded: wrong codes count toward the per-account login limit across fresh mfa_tokens', async () => {
    const user = await enrolled();
    const statuses: number[] = [];
    for (let i = 0; i < 12; i++) {
      const token = await mfaToken(user).catch(() => undefined);
      if (!token) {
        statuses.push(429);
        continue;
      }
      statuses.push((await t.call('POST', '/auth/login/mfa', { body: { mfa_token: token, code: String(100000 + i) } })).status);
    }
    assert.ok(statuses.includes(429), `rate limited within 12 guesses: ${statuses}`);
    assert.ok(statuses.filter((s) => s === 401).length <= 8, `at most the limit of guesses: ${statuses}`);
  });

  test('cookie mode and --session-policy single behave as for a password login', async () => {
    const single = await startTestServer({ sessionPolicy: 'single' });
    try {
      const user = await signUp(single);
      const start = await single.call('POST', '/auth/mfa/totp', { token: user.pair.access_token });
      const now = () => TOTP.generate({ secret: Secret.fromBase32(start.body.secret), timestamp: single.clock.now() });
      await single.call('POST', '/auth/mfa/totp/confirm', { token: user.pair.access_token, body: { code: now() } });
      single.clock.advance(STEP);
      const first = await single.call('POST', '/auth/login', { body: { username: user.username, password: user.password } });
      const res = await single.call('POST', '/auth/login/mfa', { headers: { origin: single.url }, body: { mfa_token: first.body.mfa_token, code: now(), use_cookie: true } });
      assert.equal(res.status, 200);
      assert.equal(res.body.refresh_token, undefined, 'in the cookie, not the body');
      assert.match(res.headers.get('set-cookie') ?? '', /tessera_refresh=.*HttpOnly/i);
      assert.equal((await single.call('POST', '/auth/refresh', { token: user.pair.refresh_token })).body.error, 'token_revoked', 'single: the older session ended');
    } finally {
      await single.close();
    }
  });

  test('turning it off needs a code or the password; then the password alone signs in again', async () => {
    const user = await enrolled();
    const session = await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: code(user.secret) } });
    const access = session.body.access_token;
    t.clock.advance(STEP);
    assert.equal((await t.call('DELETE', '/auth/mfa/totp', { token: access, body: { code: '123456' === code(user.secret) ? '654321' : '123456' } })).body.error, 'invalid_code');
    assert.equal((await t.call('DELETE', '/auth/mfa/totp', { token: access, body: { password: 'not my password' } })).body.error, 'invalid_credentials');
    assert.equal((await t.call('DELETE', '/auth/mfa/totp', { token: access, body: {} })).status, 400);
    assert.equal((await t.call('DELETE', '/auth/mfa/totp', { token: access, body: { code: code(user.secret) } })).status, 204);
    assert.equal((await t.call('DELETE', '/auth/mfa/totp', { token: access, body: { password: user.password } })).status, 404);
    assert.equal((await t.call('POST', '/auth/login', { body: { username: user.username, password: user.password } })).status, 200);
    assert.equal(await t.server.context.store.secondFactors.unusedRecoveryCodes(user.userId), 0, 'the recovery codes died with it');
    assert.equal((await t.server.context.store.audit.list({ userId: user.userId, event: 'mfa.disabled', limit: 2 })).length, 1);
  });

  test('the secret is sealed at rest with the key-encryption key', async () => {
    const sealed = await startTestServer({ keyEncryptionKey: randomBytes(32).toString('base64') });
    try {
      const user = await signUp(sealed);
      const start = await sealed.call('POST', '/auth/mfa/totp', { token: user.pair.access_token });
      const { rows } = await sealed.server.context.store.db.query<{ secret: Record<string, unknown> }>('SELECT secret FROM totp_factors WHERE user_id = $1', [user.userId]);
      assert.equal(typeof rows[0]?.secret.sealed, 'string');
      assert.ok(!JSON.stringify(rows[0]).includes(start.body.secret));
      const now = TOTP.generate({ secret: Secret.fromBase32(start.body.secret), timestamp: sealed.clock.now() });
      assert.equal((await sealed.call('POST', '/auth/mfa/totp/confirm', { token: user.pair.access_token, body: { code: now } })).status, 200);
    } finally {
      await sealed.close();
    }
  });

  test('no secret, code or recovery code in any log line or audit row', async () => {
    const user = await enrolled();
    await t.call('POST', '/auth/login/mfa', { body: { mfa_token: await mfaToken(user), code: user.recoveryCodes[5] } });
    const audit = JSON.stringify(await t.server.context.store.audit.list({ limit: 10_000 }));
    for (const secret of [user.secret, ...user.recoveryCodes, ...user.recoveryCodes.map((c) => c.replaceAll('-', ''))]) {
      assert.ok(!logs.text().includes(secret), 'a secret in the log');
      assert.ok(!audit.includes(secret), 'a secret in the audit log');
    }
  });
});
