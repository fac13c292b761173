import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decideRotation, type RefreshChain } from './refresh_rotation.js';

const NOW = new Date(Date.UTC(2030, 0, 1, 12));
const GRACE = 10_000;
const at = (ms: number) => new Date(NOW.getTime() + ms);

const live: RefreshChain = {
  revokedAt: null,
  expiresAt: at(3_600_000),
  userLive: true,
  currentHash: 'current',
  currentExpiresAt: at(3_600_000),
  previousHash: 'previous',
  rotatedAt: at(-5_000),
};

describe('decideRotation: the refresh policy', () => {
  test('the named cases', () => {
    const cases: [string, Partial<RefreshChain>, string, string][] = [
      ['the current token of a live session rotates', {}, 'current', 'rotate'],
      ['the token just replaced, within the grace window, gets the same successor', {}, 'previous', 'replay'],
      ['… at the very end of the window too', { rotatedAt: at(-GRACE) }, 'previous', 'replay'],
      ['… one millisecond after it, it is theft', { rotatedAt: at(-GRACE - 1) }, 'previous', 'reuse'],
      ['an older link of the chain (a grandparent) is theft at any time', {}, 'grandparent', 'reuse'],
      ['a session never rotated has no previous token to replay', { previousHash: null, rotatedAt: null }, 'previous', 'reuse'],
      ['a current token past its own expiry is expired', { currentExpiresAt: at(0) }, 'current', 'expired'],
      ['a session past its absolute end is expired, whatever is presented', { expiresAt: at(0) }, 'current', 'expired'],
      ['a revoked session stays revoked, whatever is presented', { revokedAt: at(-1) }, 'current', 'revoked'],
      ['a disabled or removed user ends the session', { userLive: false }, 'current', 'end'],
      ['a chain without a current token cannot replay', { currentHash: null }, 'previous', 'reuse'],
    ];
    for (const [name, change, presented, expected] of cases) {
      assert.equal(decideRotation({ ...live, ...change }, presented, NOW, GRACE).kind, expected, name);
    }
    assert.deepEqual(decideRotation({ ...live, userLive: false }, 'current', NOW, GRACE), { kind: 'end', reason: 'user_disabled' });
  });

  test('every combination obeys the precedence: revoked, then expired, then a dead user, then the token', () => {
    const options = {
      revokedAt: [null, at(-1)],
      expiresAt: [at(0), at(1), at(3_600_000)],
      userLive: [true, false],
      currentHash: [null, 'current'],
      currentExpiresAt: [null, at(-1), at(0), at(1)],
      previousHash: [null, 'previous'],
      rotatedAt: [null, at(-GRACE - 1), at(-GRACE), at(0)],
    } as const;
    let combinations = 0;
    const keys = Object.keys(options) as (keyof RefreshChain)[];
    const walk = (index: number, chain: Partial<RefreshChain>): void => {
      if (index === keys.length) {
        for (const presented of ['current', 'previous', 'other']) {
          check(chain as RefreshChain, presented);
          combinations++;
        }
        return;
      }
      const key = keys[index]!;
      for (const value of options[key]) walk(index + 1, { ...chain, [key]: value });
    };
    const check = (chain: RefreshChain, presented: string) => {
      const decision = decideRotation(chain, presented, NOW, GRACE).kind;
      const where = `${JSON.stringify(chain)} presented ${presented}`;
      if (chain.revokedAt) return assert.equal(decision, 'revoked', where);
      if (chain.expiresAt <= NOW) return assert.equal(decision, 'expired', where);
      if (!chain.userLive) return assert.equal(decision, 'end', where);
      if (presented === chain.currentHash) {
        return assert.equal(decision, chain.currentExpiresAt && chain.currentExpiresAt <= NOW ? 'expired' : 'rotate', where);
      }
      const inGrace = presented === chain.previousHash && chain.rotatedAt !== null && chain.currentHash !== null && NOW.getTime() - chain.rotatedAt.getTime() <= GRACE;
      assert.equal(decision, inGrace ? 'replay' : 'reuse', where);
      // Nothing that is not the current token ever rotates, and nothing at all revives a revoked or expired session.
      assert.notEqual(decision, 'rotate', where);
    };
    walk(0, {});
    assert.equal(combinations, 2 * 3 * 2 * 2 * 4 * 2 * 4 * 3);
  });

  test('it is pure: the same inputs, the same answer, and the chain is left as it was', () => {
    const chain = structuredClone(live);
    const first = decideRotation(chain, 'previous', NOW, GRACE);
    assert.deepEqual(decideRotation(chain, 'previous', NOW, GRACE), first);
    assert.deepEqual(chain, live);
  });
});
