import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { captureLogs } from '../../../../test/support/log_capture.js';
import { startSmtpServer } from '../../../../test/support/smtp_server.js';
import { createLogger } from '../lib/logger.js';
import { createMailer, type MailerOptions, parseSmtpUrl, validateMailFrom, validateSmtpUrl } from './mailer.js';
import { emailVerificationMail, passwordResetMail } from './messages.js';

const FROM = 'Tessera <no-reply@tessera.test>';
const RECIPIENT = 'ada.lovelace@example.com';

/** A reset mail whose token is fresh, so a test can search the logs for it. */
function resetMail() {
  const token = randomBytes(32).toString('base64url');
  const url = `https://app.tessera.test/#reset-password=${token}`;
  return { token, url, content: passwordResetMail({ username: 'ada', url, validMinutes: 30 }) };
}

/** A mailer with test-sized back-off, its log lines (parsed) and the outcomes it reported. */
function mailerFor(smtpUrl: string, options: Partial<MailerOptions> = {}) {
  const logs = captureLogs();
  const outcomes: string[] = [];
  const mailer = createMailer({
    smtpUrl,
    from: FROM,
    log: createLogger('debug', logs.stream),
    retry: { baseDelayMs: 5, maxDelayMs: 20 },
    onResult: (kind, outcome) => outcomes.push(`${kind}:${outcome}`),
    ...options,
  });
  const lines = () =>
    logs
      .text()
      .split('\n')
      .filter(Boolean)
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  return { mailer, logs, outcomes, lines };
}

/** Fails the test instead of hanging it; the ref'd timer also keeps the loop alive while only unref'd retry timers remain. */
async function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** A loopback port nothing listens on. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

function assertNothingSecret(logText: string, mail: { token: string; url: string; content: { subject: string; text: string } }) {
  for (const secret of [mail.token, mail.url, 'reset-password', mail.content.subject, 'Hello ada', RECIPIENT, 'ada.lovelace']) {
    assert.ok(!logText.includes(secret), `the log holds ${JSON.stringify(secret)}:\n${logText}`);
  }
}

test('the messages: link on its own line, validity and an ignore-me line, HTML escaped', () => {
  const url = 'https://app.tessera.test/#reset-password=abc';
  const reset = passwordResetMail({ username: 'ada', url, validMinutes: 30 });
  assert.equal(reset.subject, 'Reset your Tessera password');
  assert.ok(reset.text.split('\n').includes(url), reset.text);
  assert.match(reset.text, /expires in 30 minutes/);
  assert.match(reset.text, /If you did not ask for this, you can ignore this mail/);
  assert.ok(!reset.subject.includes(url));
  assert.match(reset.html, /<a href="https:\/\/app\.tessera\.test\/#reset-password=abc">/);

  const verify = emailVerificationMail({ username: 'ada', url: 'https://app.tessera.test/#verify-email=xyz', validHours: 1 });
  assert.match(verify.text, /expires in 1 hour\./);
  assert.ok(verify.text.split('\n').includes('https://app.tessera.test/#verify-email=xyz'));

  const hostile = passwordResetMail({ username: '<b>"x"&\'y\'</b>', url: 'https://a.test/?q="><script>', validMinutes: 5 });
  assert.ok(!hostile.html.includes('<b>') && !hostile.html.includes('<script>'), hostile.html);
  assert.match(hostile.html, /&#60;b&#62;&#34;x&#34;&#38;&#39;y&#39;&#60;\/b&#62;/);
  assert.match(hostile.html, /<p><a href="https:\/\/a\.test\/\?q=%22%3E%3Cscript%3E">https:\/\/a\.test\/\?q=%22%3E%3Cscript%3E<\/a><\/p>/);

  for (const bad of ['javascript:alert(1)', '/relative', 'not a url']) {
    assert.throws(() => passwordResetMail({ username: 'ada', url: bad, validMinutes: 5 }), TypeError);
  }
  assert.throws(() => emailVerificationMail({ username: 'ada', url, validHours: 0 }), TypeError);
});

test('delivers text and HTML from the configured sender', async (t) => {
  const smtp = await startSmtpServer();
  const { mailer, outcomes, lines } = mailerFor(smtp.url);
  t.after(() => Promise.all([mailer.close(), smtp.close()]));
  const mail = resetMail();
  mailer.send(RECIPIENT, mail.content, { kind: 'password_reset', userId: 'u1' });
  await within(mailer.idle(), 5000, 'idle');
  const received = await smtp.waitForMail((m) => m.to.includes(RECIPIENT));
  assert.deepEqual(received.to, [RECIPIENT]);
  assert.equal(received.from, FROM);
  assert.equal(received.envelopeFrom, 'no-reply@tessera.test');
  assert.equal(received.subject, mail.content.subject);
  assert.equal(received.text.trim(), mail.content.text.trim());
  assert.equal(received.html.trim(), mail.content.html.trim());
  assert.equal(received.firstLink(), mail.url);
  assert.equal(received.secure, false);
  assert.deepEqual(outcomes, ['password_reset:sent']);
  const sent = lines().find((l) => l.msg === 'mail sent');
  assert.equal(sent?.level, 20);
  assert.equal(sent?.kind, 'password_reset');
  assert.equal(sent?.userId, 'u1');
});

test('STARTTLS: the session is upgraded, and an untrusted certificate fails the send rather than falling back to clear text', async (t) => {
  const smtp = await startSmtpServer({ tls: 'starttls' });
  t.after(() => smtp.close());
  assert.match(smtp.url, /^smtp:\/\//);

  const trusting = mailerFor(smtp.url, { tls: { ca: smtp.ca! } });
  t.after(() => trusting.mailer.close());
  trusting.mailer.send(RECIPIENT, resetMail().content, { kind: 'password_reset', userId: 'u1' });
  await within(trusting.mailer.idle(), 5000, 'idle');
  assert.equal((await smtp.waitForMail()).secure, true);

  const untrusting = mailerFor(smtp.url, { retry: { attempts: 2, baseDelayMs: 5 } });
  t.after(() => untrusting.mailer.close());
  untrusting.mailer.send('grace@example.com', resetMail().content, { kind: 'password_reset', userId: 'u2' });
  await within(untrusting.mailer.idle(), 5000, 'idle');
  assert.deepEqual(untrusting.outcomes, ['password_reset:failed']);
  assert.equal(smtp.messages.length, 1, 'nothing was delivered without a trusted certificate');
  const gaveUp = untrusting.lines().find((l) => l.msg === 'mail not sent, giving up');
  assert.deepEqual([gaveUp?.code, gaveUp?.originalCode, gaveUp?.attempt], ['ESOCKET', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 2]);
});

test('smtps:// speaks TLS from the first byte', async (t) => {
  const smtp = await startSmtpServer({ tls: 'implicit' });
  t.after(() => smtp.close());
  assert.match(smtp.url, /^smtps:\/\//);
  const { mailer, outcomes } = mailerFor(smtp.url, { tls: { ca: smtp.ca! } });
  t.after(() => mailer.close());
  mailer.send(RECIPIENT, resetMail().content, { kind: 'password_reset', userId: 'u1' });
  await within(mailer.idle(), 5000, 'idle');
  assert.deepEqual(outcomes, ['password_reset:sent']);
  assert.equal((await smtp.waitForMail()).secure, true);
});

test('AUTH uses the credentials of the URL, percent-decoded; refused credentials are given up on at once', async (t) => {
  const auth = { user: 'mailer@tessera.test', pass: 'p@ss:w/rd %' };
  const smtp = await startSmtpServer({ tls: 'starttls', auth });
  t.after(() => smtp.close());
  const { mailer, outcomes } = mailerFor(smtp.url, { tls: { ca: smtp.ca! } });
  t.after(() => mailer.close());
  mailer.send(RECIPIENT, resetMail().content, { kind: 'email_verification', userId: 'u1' });
  await within(mailer.idle(), 5000, 'idle');
  assert.deepEqual(outcomes, ['email_verification:sent']);
  const received = await smtp.waitForMail();
  assert.equal(received.user, auth.user);
  assert.equal(received.secure, true, 'the credentials went over TLS');

  const wrongUrl = smtp.url.replace(encodeURIComponent(auth.pass), 'wrong');
  const wrong = mailerFor(wrongUrl, { tls: { ca: smtp.ca! } });
  t.after(() => wrong.mailer.close());
  wrong.mailer.send(RECIPIENT, resetMail().content, { kind: 'password_reset', userId: 'u2' });
  await within(wrong.mailer.idle(), 5000, 'idle');
  assert.deepEqual(wrong.outcomes, ['password_reset:failed']);
  const gaveUp = wrong.lines().find((l) => l.msg === 'mail not sent, giving up');
  assert.deepEqual([gaveUp?.code, gaveUp?.responseCode, gaveUp?.attempt, gaveUp?.reason], ['EAUTH', 535, 1, 'permanent']);
  assert.ok(!wrong.logs.text().includes('wrong'), 'the password is not logged');
});

test('temporary failures are retried with back-off until the server takes the message', async (t) => {
  const smtp = await startSmtpServer({ failFirst: 2 });
  const { mailer, outcomes, lines, logs } = mailerFor(smtp.url);
  t.after(() => Promise.all([mailer.close(), smtp.close()]));
  const mail = resetMail();
  mailer.send(RECIPIENT, mail.content, { kind: 'password_reset', userId: 'u1' });
  await within(mailer.idle(), 5000, 'idle');
  assert.equal(smtp.attempts, 3);
  assert.equal(smtp.messages.length, 1);
  assert.deepEqual(outcomes, ['password_reset:sent']);
  const retries = lines().filter((l) => l.msg === 'mail not sent, will retry');
  assert.deepEqual(
    retries.map((l) => [l.attempt, l.responseCode, l.code, l.kind, l.userId]),
    [
      [1, 451, 'EMESSAGE', 'password_reset', 'u1'],
      [2, 451, 'EMESSAGE', 'password_reset', 'u1'],
    ],
  );
  for (const l of retries) assert.ok(typeof l.retryInMs === 'number' && l.retryInMs >= 2 && l.retryInMs <= 20, `retryInMs ${l.retryInMs}`);
  assertNothingSecret(logs.text(), mail);
});

test('gives up after the last attempt, with a log line that holds no token, link, body or address', async (t) => {
  const smtp = await startSmtpServer({ failFirst: 1000 });
  const { mailer, outcomes, lines, logs } = mailerFor(smtp.url, { retry: { attempts: 3, baseDelayMs: 5, maxDelayMs: 10 } });
  t.after(() => Promise.all([mailer.close(), smtp.close()]));
  const mail = resetMail();
  mailer.send(RECIPIENT, mail.content, { kind: 'password_reset', userId: 'u1' });
  await within(mailer.idle(), 5000, 'idle');
  assert.equal(smtp.attempts, 3);
  assert.deepEqual(outcomes, ['password_reset:failed']);
  const gaveUp = lines().filter((l) => l.msg === 'mail not sent, giving up');
  assert.equal(gaveUp.length, 1);
  assert.equal(gaveUp[0]!.level, 50);
  assert.deepEqual(
    [gaveUp[0]!.kind, gaveUp[0]!.userId, gaveUp[0]!.attempt, gaveUp[0]!.responseCode, gaveUp[0]!.reason, gaveUp[0]!.recipientDomain],
    ['password_reset', 'u1', 3, 451, 'attempts', 'example.com'],
  );
  assertNothingSecret(logs.text(), mail);
});

test('a permanent rejection that quotes the recipient is given up on at once, and the quote is not logged', async (t) => {
  const smtp = await startSmtpServer({ rejectRecipient: (address) => address === RECIPIENT });
  t.after(() => smtp.close());
  const { mailer, outcomes, lines, logs } = mailerFor(smtp.url);
  t.after(() => mailer.close());
  const mail = resetMail();
  mailer.send(RECIPIENT, mail.content, { kind: 'password_reset', userId: 'u1' });
  await within(mailer.idle(), 5000, 'idle');
  assert.deepEqual(outcomes, ['password_reset:failed']);
  const gaveUp = lines().find((l) => l.msg === 'mail not sent, giving up');
  assert.deepEqual(
    [gaveUp?.reason, gaveUp?.attempt, gaveUp?.code, gaveUp?.responseCode, gaveUp?.enhancedStatus, gaveUp?.command],
    ['permanent', 1, 'EENVELOPE', 550, '5.1.1', 'RCPT TO'],
  );
  assert.equal(smtp.attempts, 0);
  assertNothingSecret(logs.text(), mail);
});

test('send returns at once while the server is down; idle() resolves once the mailer gives up', async (t) => {
  const port = await closedPort();
  const { mailer, outcomes, lines, logs } = mailerFor(`smtp://127.0.0.1:${port}`, { retry: { attempts: 3, baseDelayMs: 5, maxDelayMs: 10 } });
  t.after(() => mailer.close());
  const mail = resetMail();
  const started = performance.now();
  for (let i = 0; i < 10; i++) mailer.send(RECIPIENT, mail.content, { kind: 'password_reset', userId: `u${i}` });
  const tookMs = performance.now() - started;
  assert.deepEqual(outcomes, [], 'send returned before any try had an outcome');
  assert.ok(tookMs < 100, `send took ${tookMs} ms`);
  await within(mailer.idle(), 5000, 'idle');
  assert.equal(outcomes.length, 10);
  assert.ok(outcomes.every((o) => o === 'password_reset:failed'));
  const gaveUp = lines().filter((l) => l.msg === 'mail not sent, giving up');
  assert.equal(gaveUp.length, 10);
  assert.deepEqual([gaveUp[0]!.code, gaveUp[0]!.originalCode, gaveUp[0]!.attempt], ['ESOCKET', 'ECONNREFUSED', 3]);
  assertNothingSecret(logs.text(), mail);
});

test('a server that accepts the connection and never speaks fails the try after timeoutMs', async (t) => {
  const sockets = new Set<Socket>();
  const silent: Server = createServer((socket) => sockets.add(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.after(() => {
    for (const socket of sockets) socket.destroy();
    return new Promise((resolve) => silent.close(resolve));
  });
  const { port } = silent.address() as { port: number };
  const { mailer, outcomes, lines } = mailerFor(`smtp://127.0.0.1:${port}`, { timeoutMs: 200, retry: { attempts: 1 } });
  t.after(() => mailer.close());
  mailer.send(RECIPIENT, resetMail().content, { kind: 'password_reset', userId: 'u1' });
  await within(mailer.idle(), 3000, 'idle');
  assert.deepEqual(outcomes, ['password_reset:failed']);
  assert.equal(lines().find((l) => l.msg === 'mail not sent, giving up')?.code, 'ETIMEDOUT');
});

test('the queue is bounded: past maxQueueLength a message is dropped with a log line', async (t) => {
  const port = await closedPort();
  const { mailer, outcomes, lines } = mailerFor(`smtp://127.0.0.1:${port}`, { maxQueueLength: 2, retry: { attempts: 1 } });
  t.after(() => mailer.close());
  for (const userId of ['u1', 'u2', 'u3']) mailer.send(RECIPIENT, resetMail().content, { kind: 'password_reset', userId });
  assert.deepEqual(outcomes, ['password_reset:failed'], 'the third was refused at once');
  const dropped = lines().find((l) => l.msg === 'mail dropped: the queue is full');
  assert.deepEqual([dropped?.userId, dropped?.queued], ['u3', 2]);
  await within(mailer.idle(), 5000, 'idle');
  assert.equal(outcomes.length, 3);
});

test('close() stops retrying at once and later sends are refused; every message gets one outcome', async (t) => {
  const smtp = await startSmtpServer({ failFirst: 1000 });
  t.after(() => smtp.close());
  const { mailer, outcomes, lines } = mailerFor(smtp.url, { retry: { attempts: 10, baseDelayMs: 60_000 } });
  mailer.send(RECIPIENT, resetMail().content, { kind: 'password_reset', userId: 'u1' });
  await within(
    (async () => {
      while (!lines().some((l) => l.msg === 'mail not sent, will retry')) await new Promise((resolve) => setTimeout(resolve, 5));
    })(),
    5000,
    'first failure',
  );
  const started = performance.now();
  await within(mailer.close(), 2000, 'close');
  assert.ok(performance.now() - started < 500, 'close did not wait for the back-off');
  await within(mailer.idle(), 100, 'idle after close');
  mailer.send(RECIPIENT, resetMail().content, { kind: 'email_verification', userId: 'u2' });
  assert.deepEqual(outcomes, ['password_reset:failed', 'email_verification:failed']);
  assert.equal(lines().find((l) => l.msg === 'mail queue discarded at shutdown')?.discarded, 1);
  assert.equal(smtp.attempts, 1);
});

test('validateSmtpUrl refuses anything but smtp:// or smtps:// with a host, without echoing the password', () => {
  const refused = [
    '',
    'not a url',
    'http://mail.example.com',
    'mailto:ops@example.com',
    'smtp://',
    'smtp:mail.example.com',
    'smtp://mail.example.com/inbox',
    'smtp://mail.example.com?tls.rejectUnauthorized=false',
    'smtp://mail.example.com#x',
    'smtp://:hunter22@mail.example.com',
    'smtp://user:hunter22@mail.example.com:99999',
    'smtp://user:%E0%A4%A@mail.example.com',
  ];
  for (const url of refused) {
    assert.throws(
      () => validateSmtpUrl(url),
      (e: unknown) => e instanceof TypeError && e.message.startsWith('smtpUrl: ') && !e.message.includes('hunter22'),
      url,
    );
  }
  assert.deepEqual(parseSmtpUrl('smtp://mail.example.com'), { secure: false, host: 'mail.example.com', port: undefined, auth: undefined });
  assert.deepEqual(parseSmtpUrl('smtps://mailer:s%40cret@mail.example.com:465/'), {
    secure: true,
    host: 'mail.example.com',
    port: 465,
    auth: { user: 'mailer', pass: 's@cret' },
  });
  assert.equal(parseSmtpUrl('smtp://[::1]:2525').host, '::1');

  for (const from of ['', 'no-reply', 'a@b.test, c@d.test', 'Tessera <no-reply@x.test>\r\nBcc: x@y.test']) {
    assert.throws(() => validateMailFrom(from), TypeError, from);
  }
  validateMailFrom('Tessera <no-reply@localhost>');
  assert.throws(() => createMailer({ smtpUrl: 'smtp://h', from: FROM, log: createLogger(false), retry: { attempts: 0 } }), /retry\.attempts/);
});
