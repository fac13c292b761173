import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as oauth from 'oauth4webapi';
import * as client from 'openid-client';
import { serveProcess } from '../support/serve_process.js';
import { signUp, startTestServer, type TestServer } from '../support/test_server.js';

describe('standard OAuth libraries take Tessera as it is', () => {
  let t: TestServer;
  before(async () => {
    // The real clock: these libraries judge exp and iat by their own.
    t = await startTestServer({ clock: Date.now });
  });
  after(() => t.close());

  test('oauth4webapi validates our access tokens as RFC 9068 JWT access tokens (client_id, typ at+jwt) and refuses a refresh token', async () => {
    const discovery = await fetch(`${t.url}/.well-known/openid-configuration`);
    const as = (await discovery.json()) as oauth.AuthorizationServer;
    const { pair } = await signUp(t);
    const request = (token: string) => new Request('https://api.example/resource', { headers: { authorization: `Bearer ${token}` } });
    const options = { [oauth.allowInsecureRequests]: true };
    const claims = await oauth.validateJwtAccessToken(as, request(pair.access_token), 'tessera-api', options);
    assert.equal(claims.client_id, 'tessera');
    assert.equal(claims.sub, (await t.call('GET', '/auth/me', { token: pair.access_token })).body.id);
    await assert.rejects(oauth.validateJwtAccessToken(as, request(pair.refresh_token), 'tessera-api', options));
    await assert.rejects(oauth.validateJwtAccessToken(as, request(pair.access_token), as.issuer, options), 'the issuer is never the audience of an access token');
  });

  test("openid-client's refreshTokenGrant refreshes through discovery's token_endpoint, and a reused token is invalid_grant", async () => {
    const config = await client.discovery(new URL(t.server.context.issuer()), 'tessera', undefined, client.None(), { execute: [client.allowInsecureRequests] });
    assert.deepEqual(config.serverMetadata().grant_types_supported, ['refresh_token']);
    const { pair } = await signUp(t);
    const refreshed = await client.refreshTokenGrant(config, pair.refresh_token);
    assert.equal(refreshed.token_type, 'bearer');
    assert.ok(refreshed.access_token && refreshed.refresh_token && refreshed.refresh_token !== pair.refresh_token);
    assert.equal((await t.call('GET', '/auth/me', { token: refreshed.access_token })).status, 200);
    const again = await client.refreshTokenGrant(config, refreshed.refresh_token!);
    assert.ok(again.access_token);
    await assert.rejects(client.refreshTokenGrant(config, 'not-a-token'), (e: client.ResponseBodyError) => e.error === 'invalid_grant' && e.status === 400);
  });

  test('the form grant speaks OAuth errors, never uses the cookie, and other routes still refuse forms', async (context) => {
    // A server on a clock the test moves, to step past the reuse grace.
    const m = await startTestServer();
    context.after(() => m.close());
    const form = (body: string, headers: Record<string, string> = {}) =>
      fetch(`${m.url}/auth/refresh`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers }, body });
    const expectOAuth = async (res: Response, status: number, error: string) => {
      assert.equal(res.status, status);
      const body = (await res.json()) as { error: string; error_description: string };
      assert.equal(body.error, error);
      assert.equal(typeof body.error_description, 'string');
      assert.equal(res.headers.get('cache-control'), 'no-store');
    };
    const { pair } = await signUp(m);
    await expectOAuth(await form('grant_type=password&username=a&password=b'), 400, 'invalid_request'); // unknown fields fail the schema
    await expectOAuth(await form('grant_type=authorization_code'), 400, 'unsupported_grant_type');
    await expectOAuth(await form(''), 400, 'invalid_request');
    await expectOAuth(await form('grant_type=refresh_token'), 400, 'invalid_request');
    await expectOAuth(await form(`grant_type=refresh_token&refresh_token=${pair.refresh_token}&client_id=someone-else`), 400, 'invalid_grant');
    await expectOAuth(await form(`grant_type=refresh_token&refresh_token=${pair.access_token}`), 400, 'invalid_grant');
    await expectOAuth(await form(`grant_type=refresh_token&refresh_token=${pair.refresh_token}`, { authorization: 'Basic dGVzc2VyYTpzZWNyZXQ=' }), 401, 'invalid_client');
    await expectOAuth(await form(`grant_type=refresh_token&refresh_token=a&refresh_token=b`), 400, 'invalid_request');
    const ok = await form(`grant_type=refresh_token&refresh_token=${pair.refresh_token}&client_id=tessera&scope=openid`);
    assert.equal(ok.status, 200);
    const rotated = (await ok.json()) as { refresh_token: string; token_type: string };
    assert.equal(rotated.token_type, 'Bearer');
    m.clock.advance(11);
    await expectOAuth(await form(`grant_type=refresh_token&refresh_token=${pair.refresh_token}`), 400, 'invalid_grant'); // reuse: the session ends
    await expectOAuth(await form(`grant_type=refresh_token&refresh_token=${rotated.refresh_token}`), 400, 'invalid_grant');
    // A refresh cookie is never the form's token: a cross-site form cannot spend it.
    const cookieLogin = await fetch(`${m.url}/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ username: (await signUp(m)).username, password: 'correct horse battery', use_cookie: true }),
    });
    const cookie = (cookieLogin.headers.get('set-cookie') ?? '').split(';')[0]!;
    assert.match(cookie, /tessera_refresh=/);
    await expectOAuth(await form('grant_type=refresh_token', { cookie }), 400, 'invalid_request');
    // JSON on the same route keeps the contract's shape.
    const json = await m.call('POST', '/auth/refresh', { body: { refresh_token: rotated.refresh_token } });
    assert.deepEqual(Object.keys(json.body).sort(), ['error', 'message']);
    // A form anywhere else is refused: a cross-site form cannot log someone in.
    const login = await fetch(`${m.url}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: 'username=a&password=bbbbbbbbbb' });
    assert.equal(login.status, 400);
    assert.equal(((await login.json()) as { error: string }).error, 'invalid_request');
  });

  test('--client-id names the client in access tokens', async () => {
    const other = await startTestServer({ clientId: 'my-spa' });
    try {
      const { pair } = await signUp(other);
      const payload = JSON.parse(Buffer.from(pair.access_token.split('.')[1]!, 'base64url').toString()) as { client_id: string };
      assert.equal(payload.client_id, 'my-spa');
    } finally {
      await other.close();
    }
  });

  test('an audience equal to the issuer is refused at start: exit 2 from tessera serve', async () => {
    await assert.rejects(startTestServer({ issuer: 'https://auth.example.com', audience: 'https://auth.example.com/' }), /audience: must differ from the issuer/);
    await assert.rejects(serveProcess(['--data-dir', 'memory://', '--issuer', 'https://auth.example.com', '--audience', 'https://auth.example.com']), /exited with 2/);
  });
});
