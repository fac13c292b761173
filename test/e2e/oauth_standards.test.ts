import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import * as oauth from 'oauth4webapi';
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
