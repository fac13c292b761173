import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { calculateJwkThumbprint, decodeJwt, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { Secret, TOTP } from 'otpauth';
import { captureLogs } from '../../../test/support/log_capture.js';
import { createDatabase, type PostgresServer, startPostgres } from '../../../test/support/postgres_server.js';
import { type AssertionOverrides, type CeremonyOverrides, SoftAuthenticator } from '../../../test/support/soft_authenticator.js';
import { signUp, startTestServer, type TestServer, uniqueName } from '../../../test/support/test_server.js';
import { MAX_PASSKEYS, signCountAccepted } from './flows/passkeys.js';
import type { Database } from './store/database.js';
import { migrate } from './store/migrations.js';
import type { NewPasskey } from './store/passkeys_store.js';
import { openPgliteDatabase } from './store/pglite_database.js';
import { openPostgresDatabase } from './store/postgres_database.js';
import type { UserRecord } from './store/records.js';
import { Store } from './store/store.js';

type Reply = Awaited<ReturnType<TestServer['call']>>;

describe('passkeys (WebAuthn): register, list, rename, remove, and sign in with one', () => {
  let t: TestServer;
  const logs = captureLogs();
  before(async () => {
    t = await startTestServer({ log: 'info', logStream: logs.stream });
  });
  after(() => t?.close());

  const origin = () => new URL(t.server.context.publicUrl()).origin;
  const authenticator = (options: { counterMode?: 'increment' | 'zero'; backedUp?: boolean } = {}) => new SoftAuthenticator({ origin: origin(), ...options });

  /** Registration options, and the response the authenticator makes for them, posted. */
  async function addPasskey(token: string, authn: SoftAuthenticator, input: { name?: string; overrides?: CeremonyOverrides } = {}): Promise<Reply> {
    // A second apart: passkeys are listed by creation time, and the test clock stands still.
    t.clock.advance(1);
    const options = await t.call('POST', '/auth/passkeys/register/options', { token });
    assert.equal(options.status, 200, JSON.stringify(options.body));
    const response = authn.register(options.body, input.overrides);
    return t.call('POST', '/auth/passkeys/register', { token, body: { response, ...(input.name === undefined ? {} : { name: input.name }) } });
  }

  /** A user with one passkey on a fresh authenticator. */
  async function withPasskey(options: { counterMode?: 'increment' | 'zero' } = {}) {
    const user = await signUp(t);
    const authn = authenticator(options);
    const added = await addPasskey(user.pair.access_token, authn);
    assert.equal(added.status, 201, JSON.stringify(added.body));
    return { ...user, authn, passkeyId: added.body.id as string };
  }

  async function loginOptions(username?: string): Promise<Reply> {
    const res = await t.call('POST', '/auth/passkeys/login/options', { body: username === undefined ? {} : { username } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res;
  }

  /** A whole passkey sign-in: options (discoverable unless a username), assertion, login. */
  async function passkeyLogin(authn: SoftAuthenticator, input: { username?: string; overrides?: AssertionOverrides; useCookie?: boolean } = {}) {
    const options = await loginOptions(input.username);
    const response = authn.authenticate(options.body, input.overrides);
    const res = await t.call('POST', '/auth/passkeys/login', { body: { response, ...(input.useCookie ? { use_cookie: true } : {}) } });
    return { res, response, options: options.body };
  }

  const stored = async (id: string) =>
    (await t.server.context.store.db.query<{ counter: string; last_used_at: Date | null; name: string }>('SELECT counter, last_used_at, name FROM passkeys WHERE id = $1', [id])).rows[0];
  const challengeCount = async () => Number((await t.server.context.store.db.query<{ n: string }>('SELECT count(*)::text AS n FROM webauthn_challenges')).rows[0]!.n);

  function refused(res: Reply, code = 'invalid_code', what = '') {
    assert.equal(res.status, code === 'invalid_code' ? 401 : res.status, `${what}: ${JSON.stringify(res.body)}`);
    assert.equal(res.body.error, code, what);
    assert.equal(typeof res.body.message, 'string');
    if (res.status === 401) assert.match(res.headers.get('www-authenticate') ?? '', /^Bearer realm/, 'not invalid_token: a client must not refresh on it');
  }

  test('registration options: bound to the user (user.id = its id bytes), discoverable, UV preferred, RP = the public URL, existing credentials excluded', async () => {
    const user = await signUp(t);
    const first = await t.call('POST', '/auth/passkeys/register/options', { token: user.pair.access_token });
    assert.equal(first.status, 200);
    const o = first.body;
    assert.deepEqual(o.rp, { name: 'Tessera', id: new URL(origin()).hostname });
    assert.equal(o.user.id, Buffer.from(user.userId.replaceAll('-', ''), 'hex').toString('base64url'));
    assert.equal(o.user.name, user.username);
    assert.equal(o.authenticatorSelection.residentKey, 'required');
    assert.equal(o.authenticatorSelection.requireResidentKey, true);
    assert.equal(o.authenticatorSelection.userVerification, 'preferred');
    assert.equal(o.attestation, 'none');
    assert.equal(o.timeout, 300_000);
    assert.match(o.challenge, /^[A-Za-z0-9_-]{43}$/);
    assert.ok(o.pubKeyCredParams.some((p: { alg: number }) => p.alg === -7));
    assert.deepEqual(o.excludeCredentials, []);
    const authn = authenticator();
    assert.equal((await t.call('POST', '/auth/passkeys/register', { token: user.pair.access_token, body: { response: authn.register(o) } })).status, 201);
    const second = await t.call('POST', '/auth/passkeys/register/options', { token: user.pair.access_token });
    assert.deepEqual(
      second.body.excludeCredentials.map((c: { id: string; type: string }) => [c.id, c.type]),
      [[authn.credentialIds[0], 'public-key']],
    );
    assert.notEqual(second.body.challenge, o.challenge);
    assert.throws(() => authn.register(second.body), /InvalidStateError/, 'the same authenticator will not register twice');
    for (const path of ['/auth/passkeys/register/options', '/auth/passkeys']) {
      const res = await t.call(path.endsWith('options') ? 'POST' : 'GET', path);
      assert.equal(res.status, 401);
      assert.equal(res.body.error, 'invalid_token');
    }
  });

  test('a session that signed in over 10 minutes ago needs the password to add one: a stolen session cannot plant a passkey for later', async () => {
    const user = await signUp(t);
    t.clock.advance(11 * 60);
    const { access_token: token } = (await t.call('POST', '/auth/refresh', { body: { refresh_token: user.pair.refresh_token } })).body;
    const refused = await t.call('POST', '/auth/passkeys/register/options', { token });
    assert.equal(refused.status, 401, JSON.stringify(refused.body));
    assert.equal(refused.body.error, 'invalid_credentials');
    assert.equal((await t.call('POST', '/auth/passkeys/register/options', { token, body: { current_password: 'wrong wrong wrong' } })).status, 401);
    const options = await t.call('POST', '/auth/passkeys/register/options', { token, body: { current_password: user.password } });
    assert.equal(options.status, 200, JSON.stringify(options.body));
    const added = await t.call('POST', '/auth/passkeys/register', { token, body: { response: authenticator().register(options.body) } });
    assert.equal(added.status, 201, JSON.stringify(added.body));
  });

  test('register, list, rename and remove: names default to "Passkey N", audited passkey.added / passkey.removed', async () => {
    const user = await signUp(t);
    const token = user.pair.access_token;
    const one = await addPasskey(token, authenticator());
    assert.equal(one.status, 201, JSON.stringify(one.body));
    assert.deepEqual(Object.keys(one.body).sort(), ['created_at', 'id', 'name']);
    assert.equal(one.body.name, 'Passkey 1');
    assert.equal(one.body.created_at, new Date(t.clock.now()).toISOString());
    assert.equal((await t.call('GET', '/auth/passkeys', { token })).body.passkeys[0].created_at, one.body.created_at);
    const two = await addPasskey(token, authenticator(), { name: 'Work laptop 💻' });
    assert.equal(two.body.name, 'Work laptop 💻');
    const three = await addPasskey(token, authenticator());
    assert.equal(three.body.name, 'Passkey 3');

    const list = await t.call('GET', '/auth/passkeys', { token });
    assert.equal(list.status, 200);
    assert.deepEqual(
      list.body.passkeys.map((p: Record<string, unknown>) => [p.id, p.name, p.last_used_at]),
      [
        [one.body.id, 'Passkey 1', null],
        [two.body.id, 'Work laptop 💻', null],
        [three.body.id, 'Passkey 3', null],
      ],
    );
    assert.deepEqual(Object.keys(list.body.passkeys[0]).sort(), ['created_at', 'id', 'last_used_at', 'name']);

    const renamed = await t.call('PATCH', `/auth/passkeys/${one.body.id}`, { token, body: { name: 'YubiKey' } });
    assert.equal(renamed.status, 200, JSON.stringify(renamed.body));
    assert.deepEqual(renamed.body, { id: one.body.id, name: 'YubiKey', created_at: one.body.created_at, last_used_at: null });

    assert.equal((await t.call('DELETE', `/auth/passkeys/${three.body.id}`, { token })).status, 204);
    assert.equal((await t.call('DELETE', `/auth/passkeys/${three.body.id}`, { token })).status, 404, 'gone');
    assert.deepEqual(
      (await t.call('GET', '/auth/passkeys', { token })).body.passkeys.map((p: { name: string }) => p.name),
      ['YubiKey', 'Work laptop 💻'],
    );
    // The next default name is a free one, not a count that collides.
    const four = await addPasskey(token, authenticator());
    assert.equal(four.body.name, 'Passkey 3');

    const added = await t.server.context.store.audit.list({ userId: user.userId, event: 'passkey.added', limit: 10 });
    assert.equal(added.length, 4);
    assert.ok(added.every((e) => e.outcome === 'success' && e.username === user.username && e.sessionId === user.pair.session_id));
    const removed = await t.server.context.store.audit.list({ userId: user.userId, event: 'passkey.removed', limit: 10 });
    assert.equal(removed.length, 1);
    assert.equal(removed[0]!.reason, `passkey ${three.body.id}`);
    const own = await t.call('GET', '/auth/audit', { token });
    assert.ok(own.body.events.some((e: { event: string }) => e.event === 'passkey.removed'), 'the user sees it among their own events');
  });

  test('names: 1 to 64 printable characters without spaces at the ends; anything else is 400 invalid_request and changes nothing', async () => {
    const { pair, passkeyId } = await withPasskey();
    const bad: [string, unknown][] = [
      ['empty', ''],
      ['65 characters', 'x'.repeat(65)],
      ['leading space', ' phone'],
      ['trailing space', 'phone '],
      ['only spaces', '   '],
      ['newline', 'pho\nne'],
      ['line separator', 'pho\u2028ne'],
      ['tab', 'pho\tne'],
      ['NUL', 'pho\u0000ne'],
      ['bidi override', '\u202Eenohp'],
      ['zero width space', 'pho\u200Bne'],
      ['lone surrogate', 'pho\uD800ne'],
      ['private use', 'pho\uE000ne'],
      ['a number', 42],
      ['null', null],
    ];
    for (const [label, name] of bad) {
      const res = await t.call('PATCH', `/auth/passkeys/${passkeyId}`, { token: pair.access_token, body: { name } });
      assert.equal(res.status, 400, label);
      assert.equal(res.body.error, 'invalid_request', label);
    }
    assert.equal((await stored(passkeyId))!.name, 'Passkey 1');
    for (const name of ['a', 'x'.repeat(64), '😀'.repeat(64), 'Ma clé — bureau', '👩‍👩‍👧‍👦 family', '日本語のキー', 'in  between']) {
      const res = await t.call('PATCH', `/auth/passkeys/${passkeyId}`, { token: pair.access_token, body: { name } });
      assert.equal(res.status, 200, `${JSON.stringify(name)}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.name, name);
    }
    const user = await signUp(t);
    const named = await addPasskey(user.pair.access_token, authenticator(), { name: 'bad\u0000name' });
    assert.equal(named.status, 400);
    assert.deepEqual((await t.call('GET', '/auth/passkeys', { token: user.pair.access_token })).body.passkeys, []);
  });

  test('discoverable sign-in: empty allowCredentials; a token pair whose access token (and every refreshed one) says amr ["hwk"]; login.succeeded', async () => {
    const user = await withPasskey();
    const { res, options } = await passkeyLogin(user.authn);
    assert.deepEqual(options.allowCredentials, []);
    assert.equal(options.userVerification, 'required');
    assert.equal(options.rpId, new URL(origin()).hostname);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.token_type, 'Bearer');
    assert.ok(res.body.refresh_token);
    const claims = decodeJwt(res.body.access_token);
    assert.deepEqual(claims.amr, ['hwk']);
    assert.equal(claims.sub, user.userId);
    assert.equal(claims.username, user.username);
    const me = await t.call('GET', '/auth/me', { token: res.body.access_token });
    assert.equal(me.body.username, user.username);
    const refreshed = await t.call('POST', '/auth/refresh', { token: res.body.refresh_token });
    assert.equal(refreshed.status, 200);
    assert.deepEqual(decodeJwt(refreshed.body.access_token).amr, ['hwk'], 'the session keeps its amr');
    const row = await stored(user.passkeyId);
    assert.equal(Number(row!.counter), 1);
    assert.equal(row!.last_used_at?.toISOString(), new Date(t.clock.now()).toISOString());
    const list = await t.call('GET', '/auth/passkeys', { token: res.body.access_token });
    assert.equal(list.body.passkeys[0].last_used_at, new Date(t.clock.now()).toISOString());
    const succeeded = await t.server.context.store.audit.list({ userId: user.userId, event: 'login.succeeded', limit: 5 });
    assert.ok(succeeded.some((e) => e.sessionId === res.body.session_id));
  });

  test('a passkey is a whole login: a user with an authenticator app is not asked for a code', async () => {
    const user = await withPasskey();
    const start = await t.call('POST', '/auth/mfa/totp', { token: user.pair.access_token });
    assert.equal(start.status, 200);
    const code = TOTP.generate({ secret: Secret.fromBase32(start.body.secret), timestamp: t.clock.now() });
    assert.equal((await t.call('POST', '/auth/mfa/totp/confirm', { token: user.pair.access_token, body: { code } })).status, 200);
    assert.equal((await t.call('POST', '/auth/login', { body: { username: user.username, password: user.password } })).body.error, 'mfa_required');
    const { res } = await passkeyLogin(user.authn);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(decodeJwt(res.body.access_token).amr, ['hwk']);
  });

  test('sign-in with a username: that account’s credentials only, and its passkey signs in', async () => {
    const user = await withPasskey();
    const second = authenticator();
    assert.equal((await addPasskey(user.pair.access_token, second)).status, 201);
    const options = await loginOptions(user.username.toUpperCase());
    assert.deepEqual(
      options.body.allowCredentials.map((c: { id: string }) => c.id),
      [...user.authn.credentialIds, ...second.credentialIds],
    );
    assert.ok(options.body.allowCredentials.every((c: { type: string; transports: string[] }) => c.type === 'public-key' && c.transports.join() === 'hybrid,internal'));
    const res = await t.call('POST', '/auth/passkeys/login', { body: { response: second.authenticate(options.body) } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.deepEqual(decodeJwt(res.body.access_token).amr, ['hwk']);
  });

  test('login options for a name without passkeys (unknown, or an account without any) look like a real account’s, stable per name', async () => {
    const withKeys = await withPasskey();
    const withoutKeys = await signUp(t);
    const unknown = uniqueName('nobody');
    const shape = (o: Record<string, unknown>) =>
      JSON.stringify({
        keys: Object.keys(o).sort(),
        allow: (o.allowCredentials as { id: string; type: string; transports: string[] }[]).map((c) => ({
          keys: Object.keys(c).sort(),
          type: c.type,
          idPlausible: /^[A-Za-z0-9_-]{22,}$/.test(c.id),
          transports: Array.isArray(c.transports) && c.transports.length > 0,
        }))[0],
      });
    const real = (await loginOptions(withKeys.username)).body;
    for (const name of [unknown, withoutKeys.username, 'ab', 'x'.repeat(200), 'a\u0000b']) {
      const a = (await loginOptions(name)).body;
      const b = (await loginOptions(name)).body;
      assert.equal(shape(a), shape(real), name);
      assert.ok(a.allowCredentials.length >= 1 && a.allowCredentials.length <= 2, name);
      assert.deepEqual(a.allowCredentials, b.allowCredentials, `${name}: the same decoys every time`);
      assert.notEqual(a.challenge, b.challenge);
      assert.ok(!a.allowCredentials.some((c: { id: string }) => withKeys.authn.credentialIds.includes(c.id)));
    }
    assert.deepEqual(
      (await loginOptions(unknown)).body.allowCredentials,
      (await loginOptions(unknown.toUpperCase())).body.allowCredentials,
      'names compare as login compares them',
    );
    assert.notDeepEqual((await loginOptions(unknown)).body.allowCredentials, (await loginOptions(`${unknown}x`)).body.allowCredentials);
  });

  test('answering a name’s login options with another account’s passkey is refused alike for real, passkey-less and unknown names', async () => {
    const attacker = await withPasskey();
    const victim = await withPasskey();
    const without = await signUp(t);
    const answers = [];
    for (const name of [victim.username, without.username, uniqueName('nobody')]) {
      const options = (await loginOptions(name)).body;
      const response = attacker.authn.authenticate(options, { credentialId: attacker.authn.credentialIds[0] });
      const res = await t.call('POST', '/auth/passkeys/login', { body: { response } });
      answers.push({ status: res.status, body: res.body });
    }
    assert.equal(answers[0]!.status, 401);
    assert.deepEqual(answers[1], answers[0], 'an account without passkeys answers as one with');
    assert.deepEqual(answers[2], answers[0], 'an unknown name answers as a real one');
    assert.equal((await passkeyLogin(attacker.authn)).res.status, 200, 'discoverable options still take any passkey');
  });

  test('a replayed assertion is refused, and so is a new one for a used challenge; nothing changes', async () => {
    const user = await withPasskey();
    const { res, response, options } = await passkeyLogin(user.authn);
    assert.equal(res.status, 200);
    const before = await stored(user.passkeyId);
    t.clock.advance(1);
    refused(await t.call('POST', '/auth/passkeys/login', { body: { response } }), 'invalid_code', 'the same assertion again');
    refused(await t.call('POST', '/auth/passkeys/login', { body: { response: user.authn.authenticate(options) } }), 'invalid_code', 'a fresh signature over the used challenge');
    assert.deepEqual(await stored(user.passkeyId), before);
    const failed = await t.server.context.store.audit.list({ event: 'login.failed', limit: 50 });
    assert.ok(failed.some((e) => e.reason === 'passkey_challenge'));
  });

  test('two logins with one assertion at once: exactly one gets a session', async () => {
    const user = await withPasskey();
    const options = (await loginOptions()).body;
    const response = user.authn.authenticate(options);
    const results = await Promise.all(Array.from({ length: 5 }, () => t.call('POST', '/auth/passkeys/login', { body: { response } })));
    assert.deepEqual(results.map((r) => r.status).sort(), [200, 401, 401, 401, 401]);
  });

  test('foreign challenges are refused and change nothing: another user’s registration, a login challenge to register, a registration challenge to sign in, another account’s login', async () => {
    const alice = await signUp(t);
    const bob = await withPasskey();
    const authn = authenticator();
    const aliceOptions = (await t.call('POST', '/auth/passkeys/register/options', { token: alice.pair.access_token })).body;
    const bobOptions = (await t.call('POST', '/auth/passkeys/register/options', { token: bob.pair.access_token })).body;
    // Bob answers Alice's ceremony.
    refused(await t.call('POST', '/auth/passkeys/register', { token: bob.pair.access_token, body: { response: authn.register(aliceOptions) } }), 'invalid_code', 'another user’s challenge');
    // A login challenge used to register.
    const login = (await loginOptions()).body;
    refused(
      await t.call('POST', '/auth/passkeys/register', { token: bob.pair.access_token, body: { response: authn.register(bobOptions, { challenge: login.challenge }) } }),
      'invalid_code',
      'a login challenge',
    );
    // A registration challenge used to sign in.
    refused(
      await t.call('POST', '/auth/passkeys/login', { body: { response: bob.authn.authenticate(login, { challenge: bobOptions.challenge }) } }),
      'invalid_code',
      'a registration challenge',
    );
    // Options for Alice's name, answered with Bob's passkey.
    const forAlice = (await loginOptions(alice.username)).body;
    refused(
      await t.call('POST', '/auth/passkeys/login', { body: { response: bob.authn.authenticate({ ...forAlice, allowCredentials: [] }) } }),
      'invalid_code',
      'a challenge bound to another account',
    );
    // Unknown challenge.
    refused(await t.call('POST', '/auth/passkeys/login', { body: { response: bob.authn.authenticate(login, { challenge: 'A'.repeat(43) }) } }), 'invalid_code', 'made up');
    assert.deepEqual((await t.call('GET', '/auth/passkeys', { token: bob.pair.access_token })).body.passkeys.length, 1);
    // Nothing was used up: each ceremony still works for its owner.
    const aliceAuthn = authenticator();
    assert.equal((await t.call('POST', '/auth/passkeys/register', { token: alice.pair.access_token, body: { response: aliceAuthn.register(aliceOptions) } })).status, 201);
    assert.equal((await t.call('POST', '/auth/passkeys/register', { token: bob.pair.access_token, body: { response: authenticator().register(bobOptions) } })).status, 201);
    assert.equal((await t.call('POST', '/auth/passkeys/login', { body: { response: bob.authn.authenticate(login) } })).status, 200);
    assert.equal((await t.call('POST', '/auth/passkeys/login', { body: { response: aliceAuthn.authenticate({ ...forAlice, allowCredentials: [] }) } })).status, 200);
  });

  test('wrong origin, wrong RP ID, no user verification, wrong ceremony type, a tampered response: 401 invalid_code, nothing stored or used', async () => {
    const user = await withPasskey();
    const token = user.pair.access_token;
    const registrations: [string, CeremonyOverrides][] = [
      ['another origin', { origin: 'https://evil.example' }],
      ['another port', { origin: `${new URL(origin()).protocol}//${new URL(origin()).hostname}:1` }],
      ['another RP ID', { rpId: 'evil.example' }],
      ['no user verification', { userVerified: false }],
      ['a get, not a create', { type: 'webauthn.get' }],
    ];
    for (const [label, overrides] of registrations) {
      refused(await addPasskey(token, authenticator(), { overrides }), 'invalid_code', `registration, ${label}`);
    }
    // The client names another credential than the authenticator made.
    const options = (await t.call('POST', '/auth/passkeys/register/options', { token })).body;
    const response = authenticator().register(options);
    const other = authenticator().register((await t.call('POST', '/auth/passkeys/register/options', { token })).body);
    refused(await t.call('POST', '/auth/passkeys/register', { token, body: { response: { ...response, id: other.id, rawId: other.id } } }), 'invalid_code', 'another id');
    refused(
      await t.call('POST', '/auth/passkeys/register', { token, body: { response: { ...response, response: { ...response.response, attestationObject: 'AAAA' } } } }),
      'invalid_code',
      'garbage attestation',
    );
    assert.equal((await t.call('GET', '/auth/passkeys', { token })).body.passkeys.length, 1);

    const before = await stored(user.passkeyId);
    const logins: [string, AssertionOverrides][] = [
      ['another origin', { origin: 'https://evil.example' }],
      ['another RP ID', { rpId: 'evil.example' }],
      ['no user verification', { userVerified: false }],
      ['a create, not a get', { type: 'webauthn.create' }],
      ['another user handle', { userHandle: Buffer.alloc(16, 7).toString('base64url') }],
    ];
    for (const [label, overrides] of logins) {
      refused((await passkeyLogin(user.authn, { overrides })).res, 'invalid_code', `login, ${label}`);
    }
    const login = (await loginOptions()).body;
    const assertion = user.authn.authenticate(login);
    const forged = { ...assertion, response: { ...assertion.response, signature: user.authn.authenticate(login).response.signature } };
    refused(await t.call('POST', '/auth/passkeys/login', { body: { response: forged } }), 'invalid_code', 'a signature over other data');
    refused(
      await t.call('POST', '/auth/passkeys/login', { body: { response: { ...assertion, id: 'AAAA', rawId: 'AAAA' } } }),
      'invalid_code',
      'an unknown credential',
    );
    assert.deepEqual(await stored(user.passkeyId), before);
    // The challenge survived every refusal: the genuine assertion still signs in.
    assert.equal((await t.call('POST', '/auth/passkeys/login', { body: { response: user.authn.authenticate(login) } })).status, 200);
    const reasons = new Set((await t.server.context.store.audit.list({ event: 'login.failed', limit: 200 })).map((e) => e.reason));
    for (const reason of ['passkey_invalid', 'passkey_unknown', 'passkey_user_handle']) assert.ok(reasons.has(reason), reason);
    assert.match(logs.text(), /passkey response refused/, 'the operator learns why (a misconfigured --public-url shows here)');
  });

  test('a challenge expires after 5 minutes', async () => {
    const user = await withPasskey();
    const options = (await loginOptions()).body;
    const registration = (await t.call('POST', '/auth/passkeys/register/options', { token: user.pair.access_token })).body;
    t.clock.advance(301);
    refused(await t.call('POST', '/auth/passkeys/login', { body: { response: user.authn.authenticate(options) } }), 'invalid_code', 'login');
    refused(
      await t.call('POST', '/auth/passkeys/register', { token: user.pair.access_token, body: { response: authenticator().register(registration) } }),
      'invalid_code',
      'registration',
    );
  });

  test('a removed passkey signs in no more', async () => {
    const user = await withPasskey();
    assert.equal((await t.call('DELETE', `/auth/passkeys/${user.passkeyId}`, { token: user.pair.access_token })).status, 204);
    refused((await passkeyLogin(user.authn)).res, 'invalid_code', 'removed');
  });

  test('signature counter: a counter that does not move on is a cloned authenticator, refused and audited; authenticators that keep none (0) work', async () => {
    const user = await withPasskey();
    const copy = user.authn.clone();
    assert.equal((await passkeyLogin(user.authn)).res.status, 200); // 1
    assert.equal((await passkeyLogin(user.authn)).res.status, 200); // 2
    const before = await stored(user.passkeyId);
    const cloned = await passkeyLogin(copy); // the copy says 1
    refused(cloned.res, 'invalid_code', 'the copy');
    assert.match(cloned.res.body.message, /counter/);
    for (const counter of [2, 0]) refused((await passkeyLogin(user.authn, { overrides: { counter } })).res, 'invalid_code', `counter ${counter}`);
    assert.deepEqual(await stored(user.passkeyId), before, 'nothing changed');
    const audit = await t.server.context.store.audit.list({ userId: user.userId, event: 'login.failed', limit: 10 });
    assert.equal(audit.filter((e) => e.reason === 'passkey_clone_suspected').length, 3);
    assert.equal((await passkeyLogin(user.authn, { overrides: { counter: 1000 } })).res.status, 200, 'a jump forward is fine');

    const synced = await withPasskey({ counterMode: 'zero' });
    for (let i = 0; i < 3; i++) assert.equal((await passkeyLogin(synced.authn)).res.status, 200);
    assert.equal(Number((await stored(synced.passkeyId))!.counter), 0);
  });

  test('the counter rule', () => {
    const table: [number, number, boolean][] = [
      [0, 0, true],
      [0, 1, true],
      [1, 2, true],
      [5, 1000, true],
      [1, 1, false],
      [2, 1, false],
      [5, 0, false],
      [0xfffffffe, 0xffffffff, true],
    ];
    for (const [storedCount, received, accepted] of table) assert.equal(signCountAccepted(storedCount, received), accepted, `${storedCount} -> ${received}`);
  });

  test('someone else’s passkey (or an unknown or malformed id) is 404 not_found on rename and delete, and stays', async () => {
    const owner = await withPasskey();
    const other = await signUp(t);
    for (const id of [owner.passkeyId, crypto.randomUUID(), 'not-a-uuid', owner.passkeyId.toUpperCase().replace(/./, 'X')]) {
      const renamed = await t.call('PATCH', `/auth/passkeys/${encodeURIComponent(id)}`, { token: other.pair.access_token, body: { name: 'mine now' } });
      assert.equal(renamed.status, 404, id);
      assert.equal(renamed.body.error, 'not_found');
      const removed = await t.call('DELETE', `/auth/passkeys/${encodeURIComponent(id)}`, { token: other.pair.access_token });
      assert.equal(removed.status, 404, id);
      assert.equal(removed.body.error, 'not_found');
    }
    assert.equal((await stored(owner.passkeyId))!.name, 'Passkey 1');
    assert.equal((await passkeyLogin(owner.authn)).res.status, 200);
  });

  test('a disabled account learns so only after a valid assertion', async () => {
    const user = await withPasskey();
    await t.server.context.store.users.setDisabled({ user: { id: user.userId }, disabled: true, now: new Date(t.clock.now()), audit: {} });
    refused((await passkeyLogin(user.authn, { overrides: { origin: 'https://evil.example' } })).res, 'invalid_code', 'an invalid assertion');
    const { res } = await passkeyLogin(user.authn);
    assert.equal(res.status, 403);
    assert.equal(res.body.error, 'account_disabled');
    const audit = await t.server.context.store.audit.list({ userId: user.userId, event: 'login.failed', limit: 5 });
    assert.ok(audit.some((e) => e.reason === 'account_disabled'));
    await t.server.context.store.users.setDisabled({ user: { id: user.userId }, disabled: false, now: new Date(t.clock.now()), audit: {} });
    assert.equal((await passkeyLogin(user.authn)).res.status, 200);
  });

  test('cookie mode: the refresh token goes into the httpOnly cookie, not the body, and refreshes keep amr ["hwk"]', async () => {
    const user = await withPasskey();
    const { res } = await passkeyLogin(user.authn, { useCookie: true });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.refresh_token, undefined);
    const cookie = res.headers.get('set-cookie') ?? '';
    assert.match(cookie, /^tessera_refresh=[^;]+;/);
    assert.match(cookie, /HttpOnly/);
    assert.match(cookie, /SameSite=Strict/);
    assert.match(cookie, /Path=\/auth/);
    const refreshed = await t.call('POST', '/auth/refresh', { headers: { cookie: cookie.split(';')[0]! } });
    assert.equal(refreshed.status, 200, JSON.stringify(refreshed.body));
    assert.deepEqual(decodeJwt(refreshed.body.access_token).amr, ['hwk']);
    // A cross-site page cannot have the cookie set.
    const options = (await loginOptions()).body;
    const crossSite = await t.call('POST', '/auth/passkeys/login', {
      headers: { origin: 'https://evil.example', 'sec-fetch-site': 'cross-site' },
      body: { response: user.authn.authenticate(options), use_cookie: true },
    });
    assert.equal(crossSite.status, 400);
    assert.equal(crossSite.headers.get('set-cookie'), null);
  });

  test('with a DPoP proof the pair is bound to its key', async () => {
    const user = await withPasskey();
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = await exportJWK(publicKey);
    const proof = await new SignJWT({ jti: crypto.randomUUID(), htm: 'POST', htu: `${t.server.context.issuer()}/auth/passkeys/login`, iat: Math.floor(t.clock.now() / 1000) })
      .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
      .sign(privateKey);
    const options = (await loginOptions()).body;
    const res = await t.call('POST', '/auth/passkeys/login', { headers: { dpop: proof }, body: { response: user.authn.authenticate(options) } });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.token_type, 'DPoP');
    assert.deepEqual(decodeJwt(res.body.access_token).cnf, { jkt: await calculateJwkThumbprint(jwk) });
    assert.deepEqual(decodeJwt(res.body.access_token).amr, ['hwk']);
  });

  test(`at most ${MAX_PASSKEYS} passkeys per account`, async () => {
    const user = await signUp(t);
    for (let i = 0; i < MAX_PASSKEYS; i++) assert.equal((await addPasskey(user.pair.access_token, authenticator())).status, 201);
    const more = await t.call('POST', '/auth/passkeys/register/options', { token: user.pair.access_token });
    assert.equal(more.status, 400);
    assert.equal(more.body.error, 'invalid_request');
  });

  test('challenges do not pile up: each new one sweeps expired ones, open registrations per user are capped, prune clears the rest', async () => {
    for (let i = 0; i < 30; i++) await loginOptions();
    t.clock.advance(301);
    const expired = async () =>
      Number((await t.server.context.store.db.query<{ n: string }>('SELECT count(*)::text AS n FROM webauthn_challenges WHERE expires_at <= $1', [new Date(t.clock.now())])).rows[0]!.n);
    const before = await expired();
    assert.ok(before >= 30);
    await loginOptions();
    assert.equal(await expired(), before - 20);
    const user = await signUp(t);
    for (let i = 0; i < 12; i++) {
      t.clock.advance(1);
      await t.call('POST', '/auth/passkeys/register/options', { token: user.pair.access_token });
    }
    const open = await t.server.context.store.db.query('SELECT 1 FROM webauthn_challenges WHERE user_id = $1', [user.userId]);
    assert.equal(open.rows.length, 5);
    assert.ok((await t.server.context.store.passkeys.prune(new Date(t.clock.now() + 301_000))) > 0);
    assert.equal(await challengeCount(), 0);
  });

  test('malformed bodies are 400 invalid_request, never a 5xx', async () => {
    const user = await signUp(t);
    const bodies: unknown[] = [
      {},
      { response: null },
      { response: 'x' },
      { response: {} },
      { response: { id: 'a', rawId: 'a', type: 'public-key', clientExtensionResults: {}, response: {} } },
      { response: { id: 'a+/', rawId: 'a', type: 'public-key', clientExtensionResults: {}, response: { clientDataJSON: 'a', authenticatorData: 'a', signature: 'a' } } },
      { response: { id: 'a', rawId: 'a', type: 'password', clientExtensionResults: {}, response: { clientDataJSON: 'a', authenticatorData: 'a', signature: 'a' } } },
    ];
    for (const body of bodies) {
      for (const [path, token] of [
        ['/auth/passkeys/login', undefined],
        ['/auth/passkeys/register', user.pair.access_token],
      ] as const) {
        const res = await t.call('POST', path, { body, ...(token ? { token } : {}) });
        assert.equal(res.status, 400, `${path} ${JSON.stringify(body)}: ${JSON.stringify(res.body)}`);
        assert.equal(res.body.error, 'invalid_request');
      }
    }
    // Well-formed, but no WebAuthn inside: a bad assertion, 401.
    const garbage = { id: 'AAAA', rawId: 'AAAA', type: 'public-key', clientExtensionResults: {}, response: { clientDataJSON: 'AAAA', authenticatorData: 'AAAA', signature: 'AAAA' } };
    refused(await t.call('POST', '/auth/passkeys/login', { body: { response: garbage } }), 'invalid_code', 'garbage');
    const noBody = await t.call('POST', '/auth/passkeys/login/options');
    assert.equal(noBody.status, 200, 'no body: discoverable');
    assert.deepEqual(noBody.body.allowCredentials, []);
  });

  test('nothing secret reaches the log', () => {
    const text = logs.text();
    assert.ok(text.length > 0);
    assert.doesNotMatch(text, /eyJ[A-Za-z0-9_-]{10,}\.eyJ/, 'no token');
    assert.doesNotMatch(text, /"(signature|attestationObject|clientDataJSON|authenticatorData|publicKey|refresh_token|access_token)"/, 'no WebAuthn payloads or tokens');
  });
});

describe('passkey sign-in counts against the login rate limit of the address', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ rateLimit: 'ip=4/1m,user=100/1m' });
  });
  after(() => t?.close());

  test('options and attempts count; past the limit 429 rate_limited with Retry-After', async () => {
    const statuses: number[] = [];
    let last: Reply | undefined;
    for (let i = 0; i < 3; i++) {
      last = await t.call('POST', '/auth/passkeys/login/options', { body: {} });
      statuses.push(last.status);
    }
    const options = last!.body;
    const authn = new SoftAuthenticator({ origin: new URL(t.server.context.publicUrl()).origin });
    authn.register({ challenge: 'AAAA', rp: { id: options.rpId, name: 'x' }, user: { id: 'AAAA', name: 'x', displayName: 'x' }, pubKeyCredParams: [{ alg: -7, type: 'public-key' }] });
    const attempt = await t.call('POST', '/auth/passkeys/login', { body: { response: authn.authenticate(options) } });
    statuses.push(attempt.status);
    const limited = await t.call('POST', '/auth/passkeys/login/options', { body: {} });
    statuses.push(limited.status);
    assert.deepEqual(statuses, [200, 200, 200, 401, 429]);
    assert.equal(limited.body.error, 'rate_limited');
    assert.ok(Number(limited.headers.get('retry-after')) > 0);
    const login = await t.call('POST', '/auth/passkeys/login', { body: { response: authn.authenticate(options) } });
    assert.equal(login.status, 429);
    t.clock.advance(61);
    assert.equal((await t.call('POST', '/auth/passkeys/login/options', { body: {} })).status, 200);
  });
});

/** The store's atomic steps, on PGlite and on a real PostgreSQL (where requests truly run at once). */
function storeSuite(driver: string, open: () => Promise<Database>) {
  describe(`the passkeys store on ${driver}`, () => {
    let store: Store;
    before(async () => {
      const db = await open();
      await migrate(db);
      store = new Store(db);
    });
    after(() => store?.close());

    const t0 = new Date(Date.UTC(2030, 0, 1));
    const at = (seconds: number) => new Date(t0.getTime() + seconds * 1000);
    const newUser = async () => {
      const username = `p${randomUUID().slice(0, 8)}`;
      return store.users.create({ id: randomUUID(), username, skeleton: username, passwordHash: 'hash', roles: [], now: t0 }, {});
    };
    const challenge = () => randomBytes(32).toString('base64url');
    const passkey = (counter = 0): NewPasskey => ({
      id: randomUUID(),
      credentialId: randomBytes(32).toString('base64url'),
      publicKey: 'pk',
      counter,
      transports: ['usb'],
      deviceType: 'singleDevice',
      backedUp: false,
    });
    const add = (user: UserRecord, c: string, p = passkey()) =>
      store.passkeys.add({ userId: user.id, username: user.username, passkey: p, name: undefined, challenge: c, max: 3, now: t0, audit: {} });

    test('a registration challenge is live for its purpose until it expires, and adds one passkey once, however many try at once', async () => {
      const user = await newUser();
      const c = challenge();
      await store.passkeys.createChallenge({ challenge: c, purpose: 'registration', userId: user.id, now: t0, expiresAt: at(300) });
      assert.deepEqual(await store.passkeys.liveChallenge(c, 'registration', at(299)), { userId: user.id });
      assert.equal(await store.passkeys.liveChallenge(c, 'authentication', t0), null);
      assert.equal(await store.passkeys.liveChallenge(c, 'registration', at(300)), null);
      const results = await Promise.all(Array.from({ length: 6 }, () => add(user, c)));
      assert.equal(results.filter((r) => typeof r === 'object').length, 1, JSON.stringify(results));
      assert.deepEqual(results.filter((r) => typeof r === 'string'), Array(5).fill('challenge'));
      assert.equal(await store.passkeys.count(user.id), 1);
    });

    test('refusals roll back whole: a duplicate credential or one passkey too many leaves the challenge and the passkeys as they were', async () => {
      const user = await newUser();
      const first = passkey();
      const c1 = challenge();
      await store.passkeys.createChallenge({ challenge: c1, purpose: 'registration', userId: user.id, now: t0, expiresAt: at(300) });
      assert.equal(typeof (await add(user, c1, first)), 'object');
      const c2 = challenge();
      await store.passkeys.createChallenge({ challenge: c2, purpose: 'registration', userId: user.id, now: t0, expiresAt: at(300) });
      assert.equal(await add(user, c2, { ...first, id: randomUUID() }), 'duplicate');
      assert.ok(await store.passkeys.liveChallenge(c2, 'registration', t0), 'the challenge is still there');
      assert.equal(typeof (await add(user, c2)), 'object');
      for (let i = 0; i < 2; i++) {
        const c = challenge();
        await store.passkeys.createChallenge({ challenge: c, purpose: 'registration', userId: user.id, now: t0, expiresAt: at(300) });
        if (i === 0) assert.equal(typeof (await add(user, c)), 'object');
        else {
          assert.equal(await add(user, c), 'too_many');
          assert.ok(await store.passkeys.liveChallenge(c, 'registration', t0));
        }
      }
      assert.deepEqual((await store.passkeys.list(user.id)).map((p) => p.name).sort(), ['Passkey 1', 'Passkey 2', 'Passkey 3']);
    });

    test('a login consumes its challenge once; a refused counter changes nothing; counters keep 32 bits', async () => {
      const user = await newUser();
      const rc = challenge();
      await store.passkeys.createChallenge({ challenge: rc, purpose: 'registration', userId: user.id, now: t0, expiresAt: at(300) });
      const added = await add(user, rc, passkey(5));
      assert.ok(typeof added === 'object');
      const c = challenge();
      await store.passkeys.createChallenge({ challenge: c, purpose: 'authentication', userId: null, now: t0, expiresAt: at(300) });
      const use = (counter: number, accept = (s: { counter: number }) => counter > s.counter) =>
        store.passkeys.use({ passkeyId: added.id, challenge: c, counter, backedUp: true, now: at(10), accept });
      assert.equal(await use(5), 'counter');
      assert.ok(await store.passkeys.liveChallenge(c, 'authentication', t0), 'still live after the refusal');
      assert.equal((await store.passkeys.findByCredentialId(added.credentialId))!.lastUsedAt, null);
      const results = await Promise.all(Array.from({ length: 6 }, () => use(0xffffffff)));
      assert.equal(results.filter((r) => typeof r === 'object').length, 1, JSON.stringify(results));
      assert.deepEqual(results.filter((r) => typeof r === 'string'), Array(5).fill('challenge'));
      const after = (await store.passkeys.findByCredentialId(added.credentialId))!;
      assert.equal(after.counter, 0xffffffff);
      assert.equal(after.backedUp, true);
      assert.deepEqual(after.lastUsedAt, at(10));
      assert.equal(await store.passkeys.use({ passkeyId: randomUUID(), challenge: c, counter: 1, backedUp: false, now: t0, accept: () => true }), 'gone');
    });

    test('many option requests at once sweep expired challenges without tripping over each other', async () => {
      for (let i = 0; i < 60; i++) await store.passkeys.createChallenge({ challenge: challenge(), purpose: 'authentication', userId: null, now: t0, expiresAt: at(1) });
      await Promise.all(
        Array.from({ length: 12 }, () => store.passkeys.createChallenge({ challenge: challenge(), purpose: 'authentication', userId: null, now: at(10), expiresAt: at(310) })),
      );
      const { rows } = await store.db.query<{ n: string }>('SELECT count(*)::text AS n FROM webauthn_challenges WHERE expires_at <= $1', [at(10)]);
      assert.ok(Number(rows[0]!.n) < 60, `${rows[0]!.n} expired left`);
    });

    test('rename and remove reach only the owner’s passkeys', async () => {
      const [owner, other] = [await newUser(), await newUser()];
      const c = challenge();
      await store.passkeys.createChallenge({ challenge: c, purpose: 'registration', userId: owner.id, now: t0, expiresAt: at(300) });
      const added = await add(owner, c);
      assert.ok(typeof added === 'object');
      assert.equal(await store.passkeys.rename({ userId: other.id, id: added.id, name: 'x' }), null);
      assert.equal(await store.passkeys.remove({ userId: other.id, username: other.username, id: added.id, now: t0, audit: {} }), null);
      assert.equal((await store.passkeys.rename({ userId: owner.id, id: added.id, name: 'mine' }))?.name, 'mine');
      assert.equal((await store.passkeys.remove({ userId: owner.id, username: owner.username, id: added.id, now: t0, audit: {} }))?.id, added.id);
      assert.equal(await store.passkeys.count(owner.id), 0);
    });
  });
}

storeSuite('PGlite', () => openPgliteDatabase(undefined));

let postgres: PostgresServer | undefined;
after(() => postgres?.stop());
storeSuite('PostgreSQL', async () => {
  postgres = await startPostgres();
  return openPostgresDatabase({ url: await createDatabase(postgres.url, 'passkeys_suite'), poolSize: 8 });
});
