import { createPublicKey, verify } from 'node:crypto';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { createNodeFastVerifier } from './verify.bench.ts';
const { privateKey, publicKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(publicKey)), kid: 'k-0190a0b0-1111-7222', alg: 'RS256', use: 'sig' };
const token = await new SignJWT({ sub: '0190a0b0-1111-7222-8333-444455556666', sid: '0190a0b0-1111-7222-8333-444455556666', username: 'bench-rs256', roles: ['user'], jti: '0190a0b0-1111-7222-8333-444455556666' }).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: jwk.kid }).setIssuedAt().setExpirationTime('15m').setIssuer('http://localhost:4000').setAudience('tessera-api').sign(privateKey);
const key = createPublicKey({ key: jwk as any, format: 'jwk' });
const d2 = token.lastIndexOf('.');
const input = Buffer.from(token.slice(0, d2)); const sig = Buffer.from(token.slice(d2 + 1), 'base64url');
const proto = createNodeFastVerifier({ jwks: [jwk as any], issuer: 'http://localhost:4000', audience: 'tessera-api', algorithms: ['RS256'] });
const tests: Record<string, () => unknown> = {
  raw: () => verify('sha256', input, key, sig),
  protoSyncish: () => proto.verify(token),
};
const acc: Record<string, number[]> = {};
for (let r = 0; r < 8; r++) for (const [name, fn] of Object.entries(tests)) {
  const c0 = process.cpuUsage(); let n = 0; const end = performance.now() + 250;
  while (performance.now() < end) { for (let i = 0; i < 16; i++) fn(); n += 16; await null; }
  const c = process.cpuUsage(c0);
  (acc[name] ??= []).push((c.user + c.system) / n);
}
for (const [k, v] of Object.entries(acc)) console.log(k, v.map((x) => x.toFixed(1)).join(' '));
