import assert from 'node:assert/strict';
import { test } from 'node:test';
import { signUp, startTestServer } from '../../../test/support/test_server.js';

/**
 * Parses Prometheus text exposition strictly enough to catch a malformed line.
 * prom-client writes NaN as `Nan` (an event-loop-lag gauge before its first sample);
 * Prometheus reads floats case-insensitively, so any case of NaN/Inf is valid.
 */
function parse(text: string): Map<string, number> {
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('# HELP ') || line.startsWith('# TYPE ')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})?) (-?[0-9.eE+-]+|nan|[+-]inf)$/i.exec(line);
    assert.ok(match, `not Prometheus text: ${line}`);
    const value = match[2]!.toLowerCase();
    samples.set(match[1]!, value === 'nan' ? Number.NaN : value.endsWith('inf') ? (value.startsWith('-') ? -Infinity : Infinity) : Number(value));
  }
  return samples;
}

test('/metrics is Prometheus text and its counters move', async () => {
  const t = await startTestServer({ reuseGrace: '10s', rateLimit: 'ip=1000/1m,user=2/1m' });
  try {
    const scrape = async () => {
      const res = await fetch(`${t.url}/metrics`);
      assert.equal(res.status, 200);
      assert.match(res.headers.get('content-type') ?? '', /^text\/plain/);
      return parse(await res.text());
    };
    const before = await scrape();
    assert.equal(before.get('tessera_logins_total{outcome="success"}'), 0);
    const { username, pair } = await signUp(t);
    const next = await t.call('POST', '/auth/refresh', { token: pair.refresh_token });
    await t.call('POST', '/auth/refresh', { token: pair.refresh_token }); // grace replay
    t.clock.advance(11);
    await t.call('POST', '/auth/refresh', { token: pair.refresh_token }); // reuse
    await t.call('POST', '/auth/refresh', { token: next.body.refresh_token }); // revoked by the reuse
    await t.call('POST', '/auth/refresh', { token: 'garbage' });
    for (let i = 0; i < 3; i++) await t.call('POST', '/auth/login', { body: { username, password: 'wrong password!!' } });
    const after = await scrape();
    assert.equal(after.get('tessera_logins_total{outcome="success"}'), 1);
    assert.equal(after.get('tessera_logins_total{outcome="invalid_credentials"}'), 2);
    assert.equal(after.get('tessera_logins_total{outcome="rate_limited"}'), 1);
    assert.equal(after.get('tessera_rate_limited_total{scope="user"}'), 1);
    for (const [outcome, n] of [['rotated', 1], ['grace_replay', 1], ['reused', 1], ['revoked', 1], ['invalid', 1]] as const) {
      assert.equal(after.get(`tessera_refreshes_total{outcome="${outcome}"}`), n, outcome);
    }
    assert.equal(after.get('tessera_active_sessions'), 0, 'the reused session is over');
    const keyAge = [...after.keys()].find((k) => k.startsWith('tessera_signing_key_age_seconds{'));
    assert.ok(keyAge?.includes('signing="true"'));
    // One series per method, route and status (the children are made once and reused).
    const count = (route: string, status: number) => after.get(`tessera_http_request_duration_seconds_count{method="POST",route="${route}",status_code="${status}"}`);
    assert.equal(count('/auth/refresh', 200), 2);
    assert.equal(count('/auth/refresh', 401), 3);
    assert.equal(count('/auth/login', 401), 2);
    assert.equal(count('/auth/login', 429), 1);
    await t.call('POST', '/no/such/route');
    await t.call('POST', '/nor/this/one');
    const later = await scrape();
    assert.equal(later.get('tessera_http_request_duration_seconds_count{method="POST",route="unmatched",status_code="404"}'), 2, 'unknown URLs share one series');
  } finally {
    await t.close();
  }
});

test('/metrics answers loopback clients only, or anyone with the metrics token; a count(*) at most every 15 s', async () => {
  // Behind a trusted proxy the client's address is the forwarded one: a remote scraper.
  const open = await startTestServer({ trustProxy: true });
  try {
    assert.equal((await fetch(`${open.url}/metrics`)).status, 200, 'loopback');
    const remote = await fetch(`${open.url}/metrics`, { headers: { 'x-forwarded-for': '203.0.113.7' } });
    assert.equal(remote.status, 403);
    assert.deepEqual(Object.keys(await remote.json()).sort(), ['error', 'message']);
    // Many scrapes, one count(*) of the sessions.
    let counts = 0;
    const sessions = open.server.context.store.sessions;
    const count = sessions.countActive.bind(sessions);
    sessions.countActive = async (now) => {
      counts++;
      return count(now);
    };
    for (let i = 0; i < 20; i++) await fetch(`${open.url}/metrics`);
    assert.ok(counts <= 1, `${counts} counts for 20 scrapes`);
  } finally {
    await open.close();
  }
  const token = 'metrics-token-0123456789abcdef';
  const guarded = await startTestServer({ trustProxy: true, metricsToken: token });
  try {
    const remote = { 'x-forwarded-for': '203.0.113.7' };
    const none = await fetch(`${guarded.url}/metrics`, { headers: remote });
    assert.equal(none.status, 401);
    assert.equal((await none.json()).error, 'invalid_token');
    assert.equal((await fetch(`${guarded.url}/metrics`, { headers: { ...remote, authorization: 'Bearer not-the-token-at-all' } })).status, 401);
    assert.equal((await fetch(`${guarded.url}/metrics`)).status, 401, 'with a token, loopback needs it too');
    const ok = await fetch(`${guarded.url}/metrics`, { headers: { ...remote, authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /tessera_active_sessions/);
  } finally {
    await guarded.close();
  }
  await assert.rejects(startTestServer({ metricsToken: 'short' }), /metricsToken: expected at least 16/);
});

test('only JSON bodies are parsed (Fastify’s text/plain parser is gone): a text/plain body is refused in the contract shape, and changes nothing', async () => {
  const t = await startTestServer();
  try {
    const res = await t.call('POST', '/auth/register', { body: '{"username":"plaintext","password":"correct horse battery"}', headers: { 'content-type': 'text/plain' } });
    assert.equal(res.status, 400);
    assert.deepEqual(res.body, { error: 'invalid_request', message: 'The request body must be JSON (Content-Type: application/json).' });
    const login = await t.call('POST', '/auth/login', { body: { username: 'plaintext', password: 'correct horse battery' } });
    assert.equal(login.status, 401, 'no user was made');
  } finally {
    await t.close();
  }
});
