import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { accessTokenHash } from '@tessera/verify';
import { Redis } from 'ioredis';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { type RedisServer, startRedis } from '../../../test/support/redis_server.js';
import { signUp, startTestServer, type TestServer } from '../../../test/support/test_server.js';

describe('the DPoP replay cache with Redis', () => {
  let redis: RedisServer;
  let t: TestServer;
  before(async () => {
    redis = await startRedis();
    t = await startTestServer({ redisUrl: redis.url });
  });
  after(async () => {
    await t?.close();
    await redis?.stop();
  });

  test('a proof seen while Redis was up is still refused by this instance once Redis is down', async () => {
    const user = await signUp(t);
    const { privateKey, publicKey } = await generateKeyPair('ES256');
    const jwk = await exportJWK(publicKey);
    const proof = (path: string, method: string, extra: Record<string, unknown> = {}) =>
      new SignJWT({ jti: crypto.randomUUID(), htm: method, htu: `${t.server.context.issuer()}${path}`, iat: Math.floor(t.clock.now() / 1000), ...extra })
        .setProtectedHeader({ alg: 'ES256', typ: 'dpop+jwt', jwk })
        .sign(privateKey);
    const login = await t.call('POST', '/auth/login', { headers: { dpop: await proof('/auth/login', 'POST') }, body: { username: user.username, password: user.password } });
    assert.equal(login.status, 200, JSON.stringify(login.body));
    const token = login.body.access_token as string;
    const captured = await proof('/auth/me', 'GET', { ath: await accessTokenHash(token) });
    const me = () => t.call('GET', '/auth/me', { headers: { authorization: `DPoP ${token}`, dpop: captured } });
    assert.equal((await me()).status, 200, 'first use');
    assert.equal((await me()).body.error, 'invalid_dpop_proof', 'a replay, while Redis is up');
    const peek = new Redis(redis.url);
    const keys = await peek.keys('tessera:dpop:*');
    peek.disconnect();
    assert.ok(keys.length >= 2 && keys.every((k) => k.length === 'tessera:dpop:'.length + 22), `fixed-size keys: ${keys.join(' ')}`);
    await redis.stop();
    assert.equal((await me()).body.error, 'invalid_dpop_proof', 'a replay, with Redis down: this instance remembers');
    const fresh = await proof('/auth/me', 'GET', { ath: await accessTokenHash(token) });
    assert.equal((await t.call('GET', '/auth/me', { headers: { authorization: `DPoP ${token}`, dpop: fresh } })).status, 200, 'fresh proofs keep working');
  });
});
