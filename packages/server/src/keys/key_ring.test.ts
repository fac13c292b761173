import assert from 'node:assert/strict';
import { createPrivateKey, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { SIGNING_ALGORITHMS } from '@tessera/protocol';
import { createLocalJWKSet, decodeProtectedHeader, exportPKCS8, generateKeyPair, jwtVerify } from 'jose';
import { signUp, startTestServer } from '../../../../test/support/test_server.js';
import { runAdminOperation } from '../operations.js';
import { migrate } from '../store/migrations.js';
import { openPgliteDatabase } from '../store/pglite_database.js';
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
        // The public key's own members and kid/alg/use: nothing private, no key_ops or ext.
        const members = { RS256: ['e', 'n'], PS256: ['e', 'n'], ES256: ['crv', 'x', 'y'], EdDSA: ['crv', 'x'] }[alg];
        assert.deepEqual(Object.keys(jwks.keys[0]).sort(), ['alg', 'kid', 'kty', 'use', ...members].sort());
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
      const now = () => Date.now();
      const rs = await KeyRing.load(store, { alg: 'RS256', now, refreshTtl: 86400 });
      const ed = await KeyRing.load(store, { alg: 'EdDSA', now, refreshTtl: 86400 });
      assert.notEqual(rs.signer.kid, ed.signer.kid);
      assert.equal(ed.signer.alg, 'EdDSA');
      assert.deepEqual(ed.jwks().keys.map((k) => k.kid).sort(), [rs.signer.kid, ed.signer.kid].sort());
      assert.deepEqual([...ed.algorithms()].sort(), ['EdDSA', 'RS256']);
      const again = await KeyRing.load(store, { alg: 'RS256', now, refreshTtl: 86400 });
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

describe('key rotation without logouts', () => {
  test('rotate: published at once, signs after the JWKS max-age, old key kept until its tokens expired', async () => {
    const t = await startTestServer({ jwksMaxAge: 300, refreshTtl: '1d', accessTtl: '15m', keyReloadInterval: 0 });
    try {
      const ctx = t.server.context;
      const host = { ...ctx, keyActivationDelay: 300 };
      const oldKid = ctx.keys.signer.kid;
      const before = await signUp(t);
      const rotated = (await runAdminOperation(host, { op: 'keys.rotate' })) as { kid: string };
      const jwks = (await t.call('GET', '/.well-known/jwks.json')).body.keys.map((k: { kid: string }) => k.kid);
      assert.deepEqual(jwks.sort(), [oldKid, rotated.kid].sort(), 'the new key is published before it signs');
      assert.equal((await t.call('GET', '/.well-known/jwks.json')).headers.get('cache-control'), 'public, max-age=300');
      const during = await signUp(t);
      assert.equal(decodeProtectedHeader(during.pair.access_token).kid, oldKid, 'still signing with the old key during the publish delay');

      t.clock.advance(301);
      await ctx.keys.reload();
      const afterwards = await signUp(t);
      assert.equal(decodeProtectedHeader(afterwards.pair.access_token).kid, rotated.kid, 'new tokens carry the new kid');
      // Tokens in flight keep working: the old access token (within its life) and the old refresh token.
      const refreshed = await t.call('POST', '/auth/refresh', { token: before.pair.refresh_token });
      assert.equal(refreshed.status, 200);
      assert.equal(decodeProtectedHeader(refreshed.body.refresh_token).kid, rotated.kid);
      assert.equal((await t.call('GET', '/auth/me', { token: during.pair.access_token })).status, 200);

      t.clock.advance(86400 + 120);
      await ctx.keys.reload();
      const later = (await t.call('GET', '/.well-known/jwks.json')).body.keys.map((k: { kid: string }) => k.kid);
      assert.deepEqual(later, [rotated.kid], 'the old key leaves once every token it signed has expired');
    } finally {
      await t.close();
    }
  });

  test('retire: tokens of the retired key are refused at once and a replacement signs', async () => {
    const t = await startTestServer({ keyReloadInterval: 0 });
    try {
      const ctx = t.server.context;
      const host = { ...ctx, keys: ctx.keys };
      const { pair } = await signUp(t);
      const oldKid = ctx.keys.signer.kid;
      const result = (await runAdminOperation(host, { op: 'keys.retire', kid: oldKid })) as { retired: string; replacement: string };
      assert.equal(result.retired, oldKid);
      assert.ok(result.replacement);
      assert.equal((await t.call('GET', '/auth/me', { token: pair.access_token })).body.error, 'invalid_token');
      assert.equal((await t.call('POST', '/auth/refresh', { token: pair.refresh_token })).body.error, 'invalid_token');
      const jwks = (await t.call('GET', '/.well-known/jwks.json')).body.keys.map((k: { kid: string }) => k.kid);
      assert.deepEqual(jwks, [result.replacement]);
      const fresh = await signUp(t);
      assert.equal(decodeProtectedHeader(fresh.pair.access_token).kid, result.replacement);
      await assert.rejects(runAdminOperation(host, { op: 'keys.retire', kid: 'nope' }), /No live key/);
    } finally {
      await t.close();
    }
  });

  test('private keys are encrypted at rest with a key-encryption key, and unusable without it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-kek-'));
    const kek = randomBytes(32).toString('base64');
    try {
      const t = await startTestServer({ dataDir: dir, keyEncryptionKey: kek });
      const kid = t.server.context.keys.signer.kid;
      const { rows } = await t.server.context.store.db.query<{ private_jwk: Record<string, unknown> }>('SELECT private_jwk FROM signing_keys');
      assert.equal(typeof rows[0]!.private_jwk.sealed, 'string');
      assert.equal(rows[0]!.private_jwk.d, undefined, 'no private key material in the clear');
      await t.close();
      await assert.rejects(startTestServer({ dataDir: dir }), /TESSERA_KEY_ENCRYPTION_KEY/);
      await assert.rejects(startTestServer({ dataDir: dir, keyEncryptionKey: randomBytes(32).toString('base64') }), /cannot be decrypted/);
      await assert.rejects(startTestServer({ dataDir: dir, keyEncryptionKey: 'too short' }), /32 random bytes/);
      const again = await startTestServer({ dataDir: dir, keyEncryptionKey: kek });
      assert.equal(again.server.context.keys.signer.kid, kid);
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a key written in the clear is sealed at the next start with a key-encryption key, audited, and no copy of it is left in any file of the data dir', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tessera-seal-'));
    const kek = randomBytes(32).toString('base64');
    try {
      // As `tessera keys rotate --data-dir D` run without the key would leave it: a plaintext key.
      const plain = await startTestServer({ dataDir: dir });
      const { rows } = await plain.server.context.store.db.query<{ kid: string; private_jwk: Record<string, string> }>('SELECT kid, private_jwk FROM signing_keys');
      const { kid, private_jwk: jwk } = rows[0]!;
      assert.equal(typeof jwk.d, 'string');
      await plain.close();

      const sealed = await startTestServer({ dataDir: dir, keyEncryptionKey: kek });
      const host = { ...sealed.server.context, now: Date.now, keyEncryptionKey: sealed.server.context.config.keyEncryptionKey };
      const listed = (await runAdminOperation(host, { op: 'keys.list' })) as { kid: string; encrypted: boolean }[];
      assert.deepEqual(listed.map((k) => [k.kid, k.encrypted]), [[kid, true]]);
      const audit = (await runAdminOperation(host, { op: 'audit', event: 'key.sealed' })) as { reason: string }[];
      assert.equal(audit.length, 1);
      assert.match(audit[0]!.reason, new RegExp(kid));
      // A command without the key-encryption key refuses to add a key in the clear beside sealed ones,
      // and one with another key-encryption key refuses to add a key the servers could not open.
      await assert.rejects(runAdminOperation({ ...host, keyEncryptionKey: undefined }, { op: 'keys.rotate' }), /sealed: a new key would be written in the clear/);
      await assert.rejects(runAdminOperation({ ...host, keyEncryptionKey: new Uint8Array(randomBytes(32)) }, { op: 'keys.rotate' }), /does not open the signing keys already sealed/);
      await sealed.close();

      // The key's material in every form it could take on disk: the JWK's base64url text, the raw
      // private exponent and primes, the PKCS#8 DER and its PEM text.
      const der = createPrivateKey({ key: jwk, format: 'jwk' }).export({ type: 'pkcs8', format: 'der' });
      const pem = createPrivateKey({ key: jwk, format: 'jwk' }).export({ type: 'pkcs8', format: 'pem' }).toString();
      const needles: [string, Buffer][] = [
        ['JWK d', Buffer.from(jwk.d!.slice(0, 48))],
        ['JWK p', Buffer.from(jwk.p!.slice(0, 48))],
        ['raw d', Buffer.from(jwk.d!, 'base64url').subarray(0, 32)],
        ['raw p', Buffer.from(jwk.p!, 'base64url').subarray(0, 32)],
        ['DER', der.subarray(200, 248)],
        ['PEM', Buffer.from(pem.split('\n')[5]!)],
      ];
      const found: string[] = [];
      const scan = (path: string) => {
        if (statSync(path).isDirectory()) {
          for (const name of readdirSync(path)) scan(join(path, name));
          return;
        }
        const bytes = readFileSync(path);
        for (const [what, needle] of needles) if (bytes.includes(needle)) found.push(`${what} in ${path}`);
      };
      scan(dir);
      assert.deepEqual(found, []);

      const again = await startTestServer({ dataDir: dir, keyEncryptionKey: kek });
      assert.equal(again.server.context.keys.signer.kid, kid, 'the sealed key still signs');
      await again.close();
      await assert.rejects(startTestServer({ dataDir: dir }), /the signing keys are sealed/);

      // Signing with a PEM file does not exempt the keys at rest in the store.
      const plainDir = mkdtempSync(join(tmpdir(), 'tessera-seal-pem-'));
      try {
        await (await startTestServer({ dataDir: plainDir })).close();
        const { privateKey } = await generateKeyPair('RS256', { extractable: true });
        const pem = join(plainDir, 'signing.pem');
        writeFileSync(pem, await exportPKCS8(privateKey), { mode: 0o600 });
        const external = await startTestServer({ dataDir: plainDir, keyEncryptionKey: kek, privateKeyFile: pem });
        const rows = await external.server.context.store.db.query<{ private_jwk: Record<string, unknown> }>('SELECT private_jwk FROM signing_keys');
        assert.ok(rows.rows.length > 0 && rows.rows.every((r) => typeof r.private_jwk.sealed === 'string'), 'stored keys sealed');
        await external.close();
      } finally {
        rmSync(plainDir, { recursive: true, force: true });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
