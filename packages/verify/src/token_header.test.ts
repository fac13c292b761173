import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TesseraError } from '@tessera/protocol';
import { tokenHeaderReader } from './token_header.js';
import { checkTokenTimes } from './token_times.js';

const segment = (json: string | Buffer) => Buffer.from(json).toString('base64url');
const token = (header: string | Buffer) => `${segment(header)}.e30.c2ln`;
const refusal = (code: string) => (error: unknown) => error instanceof TesseraError && error.code === code;

test('a header is read once per segment text and refused unless it is a JSON object with string kid and alg and no crit', () => {
  const read = tokenHeaderReader(4);
  assert.deepEqual(read(token('{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}')), { kid: 'k1', alg: 'EdDSA' });
  assert.equal(read(token('{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}')), read(token('{"alg":"EdDSA","kid":"k1","typ":"at+jwt"}')), 'the same entry');
  for (const bad of [
    '[1]',
    'null',
    '"text"',
    '{"alg":"EdDSA"}',
    '{"kid":"k1"}',
    '{"alg":"EdDSA","kid":["k1"]}',
    '{"alg":{},"kid":"k1"}',
    '{"alg":"EdDSA","kid":"k1","crit":["b64"]}',
    '{"alg":"EdDSA","kid":"k1","crit":[]}',
    '{"alg":"EdDSA",',
  ]) {
    assert.throws(() => read(token(bad)), refusal('invalid_token'), bad);
  }
  // Invalid UTF-8 (a lone continuation byte in the kid) is refused, not replaced.
  assert.throws(() => read(token(Buffer.concat([Buffer.from('{"alg":"EdDSA","kid":"k'), Buffer.from([0x80]), Buffer.from('"}')]))), refusal('invalid_token'));
  assert.throws(() => read('no-dots-at-all'), refusal('invalid_token'));
  assert.throws(() => read('.e30.c2ln'), refusal('invalid_token'));
});

test('forged headers cannot grow the cache past its capacity', () => {
  const read = tokenHeaderReader(4);
  for (let i = 0; i < 100; i++) assert.equal(read(token(`{"alg":"EdDSA","kid":"k${i}"}`)).kid, `k${i}`);
  assert.equal(read(token('{"alg":"EdDSA","kid":"k1"}')).kid, 'k1', 'still right after many clears');
});

test('times: exp and iat numbers, nbf passed and exp not, with the tolerance on both sides', () => {
  const now = 1_800_000_000_000;
  const s = now / 1000;
  const ok = (claims: Record<string, unknown>) => assert.doesNotThrow(() => checkTokenTimes(claims, now, 5));
  const fails = (claims: Record<string, unknown>, code: string) => assert.throws(() => checkTokenTimes(claims, now, 5), refusal(code), JSON.stringify(claims));
  ok({ iat: s, exp: s + 60 });
  ok({ iat: s, exp: s - 4 });
  fails({ iat: s, exp: s - 5 }, 'token_expired');
  ok({ iat: s, exp: s + 60, nbf: s + 5 });
  fails({ iat: s, exp: s + 60, nbf: s + 6 }, 'invalid_token');
  fails({ iat: s, exp: s + 60, nbf: '0' }, 'invalid_token');
  fails({ iat: s, exp: '9999999999' }, 'invalid_token');
  fails({ exp: s + 60 }, 'invalid_token');
  fails({ iat: s, exp: Number.POSITIVE_INFINITY }, 'invalid_token');
  fails({ iat: Number.NaN, exp: s + 60 }, 'invalid_token');
});
