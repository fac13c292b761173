import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readEvents } from '../../../test/support/revocation_feed.js';
import { signUp, startTestServer, type TestServer } from '../../../test/support/test_server.js';

describe('revocation feed', () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ accessTtl: '15m', feedHeartbeat: 1 });
  });
  after(() => t.close());

  test('JSON: a logout is listed until its access tokens have expired, and the cursor resumes', async () => {
    const start = await t.call('GET', '/auth/revocations');
    assert.equal(start.status, 200);
    const { pair } = await signUp(t);
    await t.call('POST', '/auth/logout', { token: pair.access_token });
    const res = await t.call('GET', `/auth/revocations?since=${start.body.cursor}`);
    const entry = res.body.revocations.find((r: { session_id: string }) => r.session_id === pair.session_id);
    assert.ok(entry, 'the logout is in the feed');
    assert.equal(Date.parse(entry.remember_until) - Date.parse(entry.revoked_at), 15 * 60 * 1000);
    assert.deepEqual(Object.keys(entry).sort(), ['remember_until', 'revoked_at', 'session_id']);
    const next = await t.call('GET', `/auth/revocations?since=${res.body.cursor}`);
    assert.deepEqual(next.body.revocations, []);
    t.clock.advance(15 * 60 + 1);
    const later = await t.call('GET', '/auth/revocations');
    assert.ok(!later.body.revocations.some((r: { session_id: string }) => r.session_id === pair.session_id), 'forgotten after one access-token lifetime');
    assert.equal((await t.call('GET', '/auth/revocations?since=abc')).body.error, 'invalid_request');
  });

  test('SSE: catch-up from the cursor, then each revocation as it happens, and heartbeats', async () => {
    const a = await signUp(t);
    const b = await signUp(t);
    const before = await t.call('GET', '/auth/revocations');
    await t.call('POST', '/auth/logout', { token: a.pair.access_token });
    const response = await fetch(`${t.url}/auth/revocations?since=${before.body.cursor}`, { headers: { accept: 'text/event-stream' } });
    assert.equal(response.status, 200);
    assert.match(response.headers.get('content-type') ?? '', /^text\/event-stream/);
    const started = Date.now();
    setTimeout(() => void t.call('POST', '/auth/logout-all', { token: b.pair.access_token }), 100);
    const events = await readEvents(response, (evs) => evs.filter((e) => e.event === 'revoked').length >= 2 && evs.some((e) => e.event === 'heartbeat'));
    const revoked = events.filter((e) => e.event === 'revoked').map((e) => JSON.parse(e.data).session_id);
    assert.deepEqual(revoked.slice(0, 2), [a.pair.session_id, b.pair.session_id], 'catch-up first, then live');
    assert.ok(events.some((e) => e.event === 'heartbeat'));
    assert.ok(Date.now() - started < 2000, 'the live revocation arrived within the bound');
    assert.match(events.find((e) => e.event === 'revoked')!.id ?? '', /^[0-9a-f]{12}\.\d+$/);
  });
});
