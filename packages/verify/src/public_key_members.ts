import type { JWK } from 'jose';

/**
 * The members that are the public key itself, per key type: the ones RFC 7638 §3.2
 * hashes into a thumbprint and key imports read. Nothing private, and none of `use`,
 * `key_ops`, `alg` or `ext`, which one crypto engine reads and another ignores.
 *
 * `@tessera/verify` reduces a DPoP proof's key to these before either engine sees it;
 * the auth server publishes its keys as these plus `kid`, `alg` and `use`.
 */
export function publicKeyMembers(jwk: JWK): JWK {
  const names = jwk.kty === 'EC' ? ['kty', 'crv', 'x', 'y'] : jwk.kty === 'OKP' ? ['kty', 'crv', 'x'] : jwk.kty === 'RSA' ? ['kty', 'e', 'n'] : ['kty'];
  const key: Record<string, unknown> = {};
  for (const name of names) if (name in jwk) key[name] = (jwk as Record<string, unknown>)[name];
  return key as JWK;
}
