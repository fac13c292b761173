import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Secret, TOTP } from 'otpauth';
import { signUp, startTestServer, type TestServer } from '../../../test/support/test_server.js';
import { type AuthClientError, createAuthClient } from './index.js';

let t: TestServer;
before(async () => {
  t = await startTestServer();
});
after(() => t?.close());

test('login surfaces mfa_required as a step; completeMfa finishes it (a wrong code leaves it open, a right one signs in)', async () => {
  const user = await signUp(t);
  const start = await t.call('POST', '/auth/mfa/totp', { token: user.pair.access_token });
  const code = () => TOTP.generate({ secret: Secret.fromBase32(start.body.secret), timestamp: t.clock.now() });
  assert.equal((await t.call('POST', '/auth/mfa/totp/confirm', { token: user.pair.access_token, body: { code: code() } })).status, 200);
  t.clock.advance(30);

  const client = createAuthClient({ baseUrl: t.url, autoRefresh: false });
  try {
    await assert.rejects(client.completeMfa('123456'), (e: AuthClientError) => e.code === 'invalid_request');
    await assert.rejects(client.login(user.username, user.password), (e: AuthClientError) => {
      assert.equal(e.code, 'mfa_required');
      assert.deepEqual(e.methods, ['totp', 'recovery_code']);
      assert.ok(!JSON.stringify(e).includes('mfa_token'), 'the step token stays inside the client');
      return true;
    });
    assert.equal(await client.getSession().catch(() => null), null, 'no session yet');
    await assert.rejects(client.completeMfa(code() === '000000' ? '111111' : '000000'), (e: AuthClientError) => e.code === 'invalid_code');
    const session = await client.completeMfa(code());
    assert.equal(session.username, user.username);
    const me = await client.fetch(`${t.url}/auth/me`);
    assert.equal(me.status, 200);
    await assert.rejects(client.completeMfa(code()), (e: AuthClientError) => e.code === 'invalid_request', 'the step is spent');
  } finally {
    client.close();
  }
});
