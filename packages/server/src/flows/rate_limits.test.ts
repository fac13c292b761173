import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RateLimiter } from '../lib/rate_limiter.js';
import { addressGroup } from './rate_limits.js';

test('addresses are limited per IPv4 address and per IPv6 /64', () => {
  assert.equal(addressGroup('203.0.113.7'), '203.0.113.7');
  assert.equal(addressGroup('::ffff:203.0.113.7'), '203.0.113.7');
  assert.equal(addressGroup('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
  assert.equal(addressGroup('2001:db8:1:2::99'), '2001:db8:1:2::/64');
  assert.equal(addressGroup('2001:DB8:1:2:ffff::1'), '2001:db8:1:2::/64');
  assert.equal(addressGroup('2001:db8::1'), '2001:db8:0:0::/64');
  assert.equal(addressGroup('::1'), '0:0:0:0::/64');
  assert.equal(addressGroup(null), 'unknown');
});

test('the sliding window forgets: a full window lifts within one more window', () => {
  const limiter = new RateLimiter({ max: 3, windowSeconds: 60 });
  const t0 = 1_000_000_020_000; // 20 s into a window
  for (let i = 0; i < 3; i++) assert.equal(limiter.consume('k', t0), 0);
  const wait = limiter.consume('k', t0);
  assert.ok(wait > 0 && wait <= 62, `wait ${wait}`);
  assert.equal(limiter.retryAfter('k', t0 + wait * 1000), 0, 'free again after Retry-After');
  assert.equal(limiter.retryAfter('k', t0 + 120_000), 0);
  limiter.refund('k', t0);
  assert.equal(limiter.retryAfter('other', t0), 0);
});
