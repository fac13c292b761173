import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startTestServer } from '../../../../test/support/test_server.js';
import { usernameSkeleton } from './usernames.js';

const password = 'correct horse battery';

test('look-alike usernames: mixed scripts are refused, a whole-script look-alike is taken, and older users get their skeletons', async () => {
  const t = await startTestServer();
  try {
    const register = (username: string) => t.call('POST', '/auth/register', { body: { username, password } });
    assert.equal((await register('alice')).status, 201);
    // A Cyrillic а among Latin letters.
    const mixed = await register('\u0430lice');
    assert.equal(mixed.status, 400);
    assert.equal(mixed.body.error, 'invalid_request');
    assert.match(mixed.body.message, /mixes scripts \(Cyrillic, Latin\)/);
    assert.equal((await register('αlice')).status, 400, 'Greek with Latin');
    // All Cyrillic, and looking exactly like a Latin name that exists.
    assert.equal((await register('ceoxap')).status, 201);
    const lookalike = await register('сеохар');
    assert.equal(lookalike.status, 409);
    assert.equal(lookalike.body.error, 'username_taken');
    // Case, fullwidth and mathematical letters are the same name too.
    for (const name of ['ALICE', 'ａｌｉｃｅ', '𝐚𝐥𝐢𝐜𝐞']) assert.equal((await register(name)).body.error, 'username_taken', name);
    // Latin look-alikes: I, l and 1; O and 0; rn and m; dotless ı.
    assert.equal((await register('admin1')).status, 201);
    for (const name of ['adminl', 'aIice', 'alıce']) assert.equal((await register(name)).body.error, 'username_taken', name);
    assert.equal((await register('modern')).status, 201);
    assert.equal((await register('rnodern')).body.error, 'username_taken');
    assert.equal((await register('strauß')).status, 201, 'ß is not b');
    assert.equal((await register('straub')).status, 201);
    // Scripts that are written together are fine, and so is a name in one other script.
    assert.equal((await register('コーヒー')).status, 201, 'the prolonged sound mark goes with Katakana');
    assert.equal((await register('ᎪꓐᏟ')).status, 400, 'Cherokee with Lisu');
    assert.equal((await register('山田たろうtaro')).status, 201);
    assert.equal((await register('иван')).status, 201);
    assert.equal((await register('nikos.αβγ')).status, 400);

    // Users from before migration 6 get their skeleton at start, and it guards them the same way.
    const store = t.server.context.store;
    await store.db.query('UPDATE users SET username_skeleton = NULL');
    assert.equal(await store.users.fillSkeletons(usernameSkeleton), 9);
    assert.equal((await register('сеохар')).status, 409);
  } finally {
    await t.close();
  }
});
