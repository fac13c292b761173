import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { SIGNING_ALGORITHMS } from '@tessera/protocol';
import { createLocalJWKSet, decodeProtectedHeader, exportPKCS8, generateKeyPair, jwtVerify } from 'jose';
import { signUp, startTestServer } from '../../../../test/support/test_server.js';
import { openPgliteDatabase } from '../store/pglite_database.js';
import { migrate } from '../store/migrations.js';
import { Store } from '../store/store.js';
import { KeyRing } from './key_ring.js';

describe('signing algorithms', () => {
  for (const alg of SIGNING_ALGORITHMS) {
    test(`${alg}: tokens verify against the published JWKS, and refresh works`, async () => {
      const t = await startTestServer({ alg });
      try {
        const { pair } = await signUp(t);
        const jwks = (await t.call('GET', '/.well-known/jwks.json')).body;
        assert.equal(jwks.keys[0].alg, alg);
        assert.equal(jwks.keys[0].use, 'sig');
        assert.equal(decodeProtectedHeader(pair.access_token).alg, alg);
        // A third party with only the JWKS (what a business server has) verifies the token.
        const { payload, protectedHeader } = await jwtVerify(pair.access_token, createLocalJWKSet(jwks), {
          issuer: t.server.context.issuer(),
          audience: 'tessera-api',
          typ: 'at+jwt',
          algorithms: [alg],
          currentDate: new Date(t.clock.now()),
        });
        assert.equal(protectedHeader.kid, jwks.keys[0].kid);
        assert.equal(payload.sid, pair.session_id);
        assert.equal((await t.call('POST', '/auth/refresh', { token: pair.refresh_token })).status, 200);
      } finally {
        await t.close();
      }
    });
  }
});

describe('key ring', () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('switching --alg makes a new signing key and keeps the old one published for tokens it signed', async () => {
    const db = await openPgliteDatabase(undefined);
    await migrate(db);
    const store = new Store(db);
    try {
      const now = new Date();
      const rs = await KeyRing.load(store, { alg: 'RS256', now });
      const ed = await KeyRing.load(store, { alg: 'EdDSA', now });
      assert.notEqual(rs.signer.kid, ed.signer.kid);
      assert.equal(ed.signer.alg, 'EdDSA');
      assert.deepEqual(ed.jwks().keys.map((k) => k.kid).sort(), [rs.signer.kid, ed.signer.kid].sort());
      assert.deepEqual(ed.algorithms().sort(), ['EdDSA', 'RS256']);
      const again = await KeyRing.load(store, { alg: 'RS256', now });
      assert.equal(again.signer.kid, rs.signer.kid, 'loading again reuses the key');
    } finally {
      await store.close();
    }
  });

  test('--private-key signs with a PEM file; its kid is the RFC 7638 thumbprint and it is published', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-key-'));
    dirs.push(dir);
    const { privateKey } = await generateKeyPair('ES256', { extractable: true });
    const file = join(dir, 'signing.pem');
    writeFileSync(file, await exportPKCS8(privateKey), { mode: 0o600 });
    const t = await startTestServer({ alg: 'ES256', privateKeyFile: file });
    try {
      const { pair } = await signUp(t);
      const jwks = (await t.call('GET', '/.well-known/jwks.json')).body;
      const kid = decodeProtectedHeader(pair.access_token).kid;
      const published = jwks.keys.find((k: { kid: string }) => k.kid === kid);
      assert.ok(published, 'the PEM key is in the JWKS');
      assert.equal(published.d, undefined);
      assert.equal(published.alg, 'ES256');
      assert.equal((await t.call('GET', '/auth/me', { token: pair.access_token })).status, 200);
    } finally {
      await t.close();
    }
    writeFileSync(file, 'not a key');
    await assert.rejects(startTestServer({ alg: 'ES256', privateKeyFile: file }), /PKCS#8/);
  });
});
