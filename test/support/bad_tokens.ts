import { createServer, type Server } from 'node:http';
import { decodeJwt, exportJWK, exportSPKI, generateKeyPair, importJWK, type JWK, SignJWT } from 'jose';
import type { TestServer } from './test_server.js';

/** Base64url of a JSON object, via Node's own encoder (no hand-written base64). */
const part = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

export interface BadToken {
  name: string;
  token: string;
  /** The error code a verifier must answer with. */
  code: 'invalid_token' | 'token_expired';
}

/** A listener an attacker points `jku`/`x5u` at: it must never receive a request. */
export interface Tripwire {
  url: string;
  hits: number;
  close(): Promise<void>;
}

export async function startTripwire(): Promise<Tripwire> {
  const state = { hits: 0 };
  const server: Server = createServer((_req, res) => {
    state.hits += 1;
    res.end('{"keys":[]}');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  return {
    url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`,
    get hits() {
      return state.hits;
    },
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}

/**
 * The table of bad access tokens every verifier and adapter must refuse, built
 * from a genuine pair of the real auth server `t`.
 */
export async function badTokens(
  t: TestServer,
  pair: { access_token: string; refresh_token: string },
  tripwireUrl: string,
): Promise<BadToken[]> {
  const access = pair.access_token;
  const claims = decodeJwt(access);
  const jwks = (await t.call('GET', '/.well-known/jwks.json')).body as { keys: (JWK & { kid: string; alg: string })[] };
  const publicJwk = jwks.keys[0]!;
  const publicPem = await exportSPKI((await importJWK(publicJwk, publicJwk.alg, { extractable: true })) as CryptoKey);
  const signer = t.server.context.keys.signer;
  const withServerKey = (payload: Record<string, unknown>, header: Record<string, unknown>) =>
    new SignJWT(payload).setProtectedHeader({ alg: signer.alg, kid: signer.kid, ...header }).sign(signer.key);
  const { privateKey: attackerKey, publicKey: attackerPublic } = await generateKeyPair('RS256', { extractable: true });
  const attackerJwk = await exportJWK(attackerPublic);
  const [h, p, s] = access.split('.') as [string, string, string];
  const now = Math.floor(t.clock.now() / 1000);

  const list: BadToken[] = [];
  const add = (name: string, token: string, code: BadToken['code'] = 'invalid_token') => list.push({ name, token, code });
  for (const alg of ['none', 'None', 'NONE', 'nOnE']) {
    add(`alg ${alg}, empty signature`, `${part({ alg, typ: 'at+jwt', kid: publicJwk.kid })}.${p}.`);
    add(`alg ${alg}, genuine signature`, `${part({ alg, typ: 'at+jwt', kid: publicJwk.kid })}.${p}.${s}`);
  }
  for (const [form, secret] of [
    ['PEM', publicPem],
    ['JWK JSON', JSON.stringify(publicJwk)],
    ['JWKS text', JSON.stringify(jwks)],
  ] as const) {
    const hs = await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'HS256', typ: 'at+jwt', kid: publicJwk.kid }).sign(new TextEncoder().encode(secret));
    add(`HS256 with the public key as ${form}`, hs);
  }
  add('wrong typ (JWT)', await withServerKey({ ...claims }, { typ: 'JWT' }));
  add('no typ', await withServerKey({ ...claims }, {}));
  add('wrong iss', await withServerKey({ ...claims, iss: 'https://evil.example' }, { typ: 'at+jwt' }));
  add('wrong aud', await withServerKey({ ...claims, aud: 'another-api' }, { typ: 'at+jwt' }));
  add('expired', await withServerKey({ ...claims, iat: now - 3600, exp: now - 60 }, { typ: 'at+jwt' }), 'token_expired');
  add('not yet valid (nbf)', await withServerKey({ ...claims, nbf: now + 3600 }, { typ: 'at+jwt' }));
  add('refresh token as access token', pair.refresh_token);
  add('truncated signature', `${h}.${p}.${s.slice(0, 20)}`);
  add('tampered payload', `${h}.${part({ ...claims, roles: ['admin'] })}.${s}`);
  add('two parts only', `${h}.${p}`);
  add('garbage', 'not-a-jwt');
  add('jku header to the tripwire, attacker key', await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: 'attacker', jku: `${tripwireUrl}/jwks.json` }).sign(attackerKey));
  add('x5u header to the tripwire', await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: publicJwk.kid, x5u: `${tripwireUrl}/cert.pem` }).sign(attackerKey));
  add('embedded jwk header', await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', jwk: attackerJwk }).sign(attackerKey));
  add('unknown kid', await new SignJWT({ ...claims }).setProtectedHeader({ alg: 'RS256', typ: 'at+jwt', kid: 'no-such-kid' }).sign(attackerKey));
  return list;
}
