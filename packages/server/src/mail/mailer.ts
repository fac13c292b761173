import type { Transporter } from 'nodemailer';
import addressparser from 'nodemailer/lib/addressparser';
import type SMTPTransport from 'nodemailer/lib/smtp-transport/index.js';
import type { Logger } from 'pino';
import type { MailContent } from './messages.js';

/** What a message is for: a label in logs and metrics, never its content. */
export type MailKind = 'password_reset' | 'email_verification' | 'security_notice';

/** Account mail, sent in the background so that no request waits for an SMTP server. */
export interface Mailer {
  /** Queues a message; never throws, never waits for SMTP. */
  send(to: string, content: MailContent, meta: { kind: MailKind; userId: string }): void;
  /** Resolves once nothing is queued or in flight (tests, shutdown). */
  idle(): Promise<void>;
  /** Stops retrying, waits briefly for in-flight sends, closes the transport. */
  close(): Promise<void>;
}

export interface MailerOptions {
  /**
   * `smtp://user:pass@host:port`: STARTTLS whenever the server offers it (port 587 when
   * left out); `smtps://…`: TLS from the start (port 465 when left out). User and password
   * percent-encoded. Checked with {@link parseSmtpUrl}.
   */
  smtpUrl: string;
  /** The `From:` of every message, e.g. `Tessera <no-reply@example.com>`. */
  from: string;
  /** Failures at warn/error, successes at debug; never a recipient, a subject or a body. */
  log: Logger;
  retry?: {
    /** Tries per message, the first one included. Default 5. */
    attempts?: number;
    /** Wait before the first retry, in milliseconds; doubled for each next one, with jitter. Default 1000. */
    baseDelayMs?: number;
    /** Longest wait between two tries, in milliseconds. Default 60000. */
    maxDelayMs?: number;
  };
  /** `ca` replaces the system's roots: for a private or test CA. Certificates are always checked. */
  tls?: { ca?: string | Buffer };
  /** Called once per message given to `send`, when it was delivered or has been given up on (metrics). */
  onResult?: (kind: MailKind, outcome: 'sent' | 'failed') => void;
  /** Messages queued, waiting to retry or in flight, beyond which `send` drops (and logs) a message. Default 10000. */
  maxQueueLength?: number;
  /** Messages sent at the same time, each over its own connection. Default 4. */
  concurrency?: number;
  /** Connection, greeting and idle-socket timeouts, in milliseconds. Default 10000. */
  timeoutMs?: number;
  /** How long `close` lets in-flight sends finish before aborting them, in milliseconds. Default 3000. */
  closeTimeoutMs?: number;
}

/**
 * The defaults of {@link MailerOptions}. Five tries 1 s apart and doubling give up within
 * about 15 s: a link the user waits for is worth little after that, and they can ask again.
 */
export const MAILER_DEFAULTS = Object.freeze({
  attempts: 5,
  baseDelayMs: 1000,
  maxDelayMs: 60_000,
  maxQueueLength: 10_000,
  concurrency: 4,
  timeoutMs: 10_000,
  closeTimeoutMs: 3000,
});

/** Where an SMTP URL points, ready for the transport. */
export interface SmtpTarget {
  /** True for `smtps://` (implicit TLS); `smtp://` upgrades with STARTTLS when offered. */
  secure: boolean;
  host: string;
  /** Undefined when the URL has none: the transport picks 587, or 465 for `smtps://`. */
  port: number | undefined;
  auth: { user: string; pass: string } | undefined;
}

/**
 * Reads an SMTP URL, or throws a `TypeError` that says what is wrong. The messages never
 * repeat the URL: it may hold a password.
 *
 * @example
 * parseSmtpUrl('smtp://mailer:s%40cret@mail.example.com:587');
 * // { secure: false, host: 'mail.example.com', port: 587, auth: { user: 'mailer', pass: 's@cret' } }
 */
export function parseSmtpUrl(value: string): SmtpTarget {
  const expected = 'expected smtp://user:pass@host:port or smtps://user:pass@host:port';
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TypeError(`smtpUrl: ${expected}`);
  }
  if (url.protocol !== 'smtp:' && url.protocol !== 'smtps:') throw new TypeError(`smtpUrl: ${expected}, got the scheme ${url.protocol}`);
  if (!url.hostname) throw new TypeError(`smtpUrl: ${expected}, got no host`);
  if (url.pathname !== '' && url.pathname !== '/') throw new TypeError(`smtpUrl: ${expected}, got a path`);
  // nodemailer would read options from the query (tls.rejectUnauthorized=false among them); ours are not negotiable in a URL.
  if (url.search || url.hash) throw new TypeError(`smtpUrl: ${expected}, got a query or fragment (options are not read from the URL)`);
  let auth: SmtpTarget['auth'];
  if (url.username || url.password) {
    if (!url.username) throw new TypeError('smtpUrl: a password without a user name');
    try {
      auth = { user: decodeURIComponent(url.username), pass: decodeURIComponent(url.password) };
    } catch {
      throw new TypeError('smtpUrl: the user name or password is not valid percent-encoding');
    }
  }
  return {
    secure: url.protocol === 'smtps:',
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port: url.port ? Number(url.port) : undefined,
    auth,
  };
}

/**
 * Throws a `TypeError` for anything but an `smtp://` or `smtps://` URL with a host (start-up checks).
 *
 * @example
 * validateSmtpUrl(config.smtpUrl); // before anything listens: a bad URL is exit code 2
 */
export function validateSmtpUrl(value: string): void {
  parseSmtpUrl(value);
}

/**
 * Throws a `TypeError` unless the value is one mailbox with an `@` and no line break.
 *
 * @example
 * validateMailFrom('Tessera <no-reply@example.com>');
 */
export function validateMailFrom(value: string): void {
  const parsed = /[\r\n]/.test(value) ? [] : addressparser(value, { flatten: true });
  const mailbox = parsed.length === 1 ? parsed[0] : undefined;
  if (!mailbox?.address || !/^[^@\s]+@[^@\s]+$/.test(mailbox.address)) {
    throw new TypeError(`from: expected one address such as "Tessera <no-reply@example.com>", got ${JSON.stringify(value)}`);
  }
}

interface Job {
  to: string;
  content: MailContent;
  kind: MailKind;
  userId: string;
  attempt: number;
}

/**
 * A mailer over SMTP with an in-memory queue: `send` returns at once, a message is retried
 * with exponential back-off and jitter, and given up on (with a log line) after
 * `retry.attempts` tries or on a permanent rejection. Messages do not survive a restart;
 * the user asks for a new link.
 *
 * @example
 * const mailer = createMailer({ smtpUrl: 'smtp://mailer:secret@mail.example.com:587', from: 'Tessera <no-reply@example.com>', log });
 * mailer.send(user.email, passwordResetMail({ username: user.username, url, validMinutes: 30 }), { kind: 'password_reset', userId: user.id });
 * await mailer.close();
 */
export function createMailer(options: MailerOptions): Mailer {
  const target = parseSmtpUrl(options.smtpUrl);
  validateMailFrom(options.from);
  const attempts = whole(options.retry?.attempts ?? MAILER_DEFAULTS.attempts, 'retry.attempts', 1);
  const baseDelayMs = whole(options.retry?.baseDelayMs ?? MAILER_DEFAULTS.baseDelayMs, 'retry.baseDelayMs', 0);
  const maxDelayMs = whole(options.retry?.maxDelayMs ?? Math.max(MAILER_DEFAULTS.maxDelayMs, baseDelayMs), 'retry.maxDelayMs', baseDelayMs);
  const maxQueueLength = whole(options.maxQueueLength ?? MAILER_DEFAULTS.maxQueueLength, 'maxQueueLength', 1);
  const concurrency = whole(options.concurrency ?? MAILER_DEFAULTS.concurrency, 'concurrency', 1);
  const timeoutMs = whole(options.timeoutMs ?? MAILER_DEFAULTS.timeoutMs, 'timeoutMs', 1);
  const closeTimeoutMs = whole(options.closeTimeoutMs ?? MAILER_DEFAULTS.closeTimeoutMs, 'closeTimeoutMs', 0);
  const { from, log } = options;

  // nodemailer (about 14 MB of memory) loads with the first message, not with the server.
  let transport: Transporter | undefined;
  const transportFor = async (): Promise<Transporter> => {
    transport ??= (await import('nodemailer')).createTransport(transportOptions);
    return transport;
  };
  const transportOptions: SMTPTransport.Options = {
    host: target.host,
    port: target.port,
    secure: target.secure,
    auth: target.auth,
    // No ignoreTLS and no opportunisticTLS: STARTTLS is used when offered, and a failed
    // upgrade (a bad certificate) fails the send instead of carrying on in clear text.
    tls: { minVersion: 'TLSv1.2', ...(options.tls?.ca ? { ca: options.tls.ca } : {}) },
    // A dead or stalled server must fail a try in seconds, not after nodemailer's minutes.
    connectionTimeout: timeoutMs,
    greetingTimeout: timeoutMs,
    socketTimeout: timeoutMs,
    dnsTimeout: timeoutMs,
    // nodemailer's own logging would print the SMTP dialogue, message and token included.
    logger: false,
    debug: false,
    transactionLog: false,
    // The content is ours; never let a message make the transport read a file or fetch a URL.
    disableFileAccess: true,
    disableUrlAccess: true,
  };

  const ready: Job[] = [];
  const waiting = new Map<Job, NodeJS.Timeout>();
  const inFlight = new Set<AbortController>();
  let idleWaiters: (() => void)[] = [];
  let closing: Promise<void> | undefined;

  const pending = () => ready.length + waiting.size + inFlight.size;

  function report(kind: MailKind, outcome: 'sent' | 'failed') {
    try {
      options.onResult?.(kind, outcome);
    } catch (error) {
      log.error({ kind, reason: (error as Error)?.message }, 'mail onResult callback threw');
    }
  }

  function checkIdle() {
    if (pending() > 0) return;
    const waiters = idleWaiters;
    idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  function pump() {
    while (!closing && inFlight.size < concurrency && ready.length > 0) void deliver(ready.shift()!);
    checkIdle();
  }

  async function deliver(job: Job) {
    const controller = new AbortController();
    inFlight.add(controller);
    job.attempt += 1;
    const facts = { kind: job.kind, userId: job.userId, attempt: job.attempt };
    try {
      await (await transportFor()).sendMail({
        from,
        to: job.to,
        subject: job.content.subject,
        text: job.content.text,
        html: job.content.html,
        signal: controller.signal,
      });
      log.debug(facts, 'mail sent');
      report(job.kind, 'sent');
    } catch (error) {
      const smtp = smtpErrorFacts(error);
      const permanent = smtp.permanent === true || (smtp.command === 'API' && smtp.code === 'EENVELOPE');
      const reason = closing ? 'closed' : permanent ? 'permanent' : job.attempt >= attempts ? 'attempts' : undefined;
      if (reason) {
        log.error({ ...facts, ...smtp, recipientDomain: domainOf(job.to), reason }, 'mail not sent, giving up');
        report(job.kind, 'failed');
      } else {
        const retryInMs = backoff(job.attempt);
        log.warn({ ...facts, ...smtp, retryInMs }, 'mail not sent, will retry');
        const timer = setTimeout(() => {
          waiting.delete(job);
          ready.push(job);
          pump();
        }, retryInMs);
        // A retry is not worth keeping the process alive for.
        timer.unref();
        waiting.set(job, timer);
      }
    } finally {
      inFlight.delete(controller);
      pump();
    }
  }

  /** Exponential, capped, with "equal jitter": never less than half the step, so retries stay spread but bounded below. */
  function backoff(attempt: number): number {
    const step = Math.min(maxDelayMs, baseDelayMs * 2 ** (attempt - 1));
    return Math.round(step / 2 + (Math.random() * step) / 2);
  }

  function drop(kind: MailKind, userId: string, message: string, extra: Record<string, unknown> = {}) {
    log.error({ kind, userId, ...extra }, message);
    report(kind, 'failed');
  }

  return {
    send(to, content, meta) {
      try {
        if (closing) return drop(meta.kind, meta.userId, 'mail dropped: the mailer is closed');
        if (pending() >= maxQueueLength) return drop(meta.kind, meta.userId, 'mail dropped: the queue is full', { queued: pending() });
        ready.push({ to, content, kind: meta.kind, userId: meta.userId, attempt: 0 });
        pump();
      } catch (error) {
        // Unreachable as far as we know; a request must not fail because of mail all the same.
        log.error({ kind: meta?.kind, userId: meta?.userId, type: (error as Error)?.name }, 'mail not queued');
      }
    },

    idle() {
      if (pending() === 0) return Promise.resolve();
      return new Promise<void>((resolve) => idleWaiters.push(resolve));
    },

    close() {
      closing ??= (async () => {
        const discarded = [...ready.splice(0), ...waiting.keys()];
        for (const timer of waiting.values()) clearTimeout(timer);
        waiting.clear();
        if (discarded.length > 0) log.warn({ discarded: discarded.length }, 'mail queue discarded at shutdown');
        for (const job of discarded) report(job.kind, 'failed');
        const drained = new Promise<void>((resolve) => {
          idleWaiters.push(resolve);
          checkIdle();
        });
        if (!(await within(drained, closeTimeoutMs))) {
          for (const controller of inFlight) controller.abort();
          await within(drained, 1000);
        }
        transport?.close();
      })();
      return closing;
    },
  };
}

/**
 * The parts of a nodemailer error that are safe to log. Its message and `response` can
 * quote the recipient, so neither is kept: the enhanced status code carries the reason.
 */
function smtpErrorFacts(error: unknown): {
  code?: string;
  originalCode?: string;
  responseCode?: number;
  enhancedStatus?: string;
  command?: string;
  timeoutType?: string;
  permanent?: boolean;
} {
  const e = (typeof error === 'object' && error !== null ? error : {}) as Record<string, unknown>;
  const text = (v: unknown) => (typeof v === 'string' && /^[A-Za-z0-9_.-]{1,40}$/.test(v) ? v : undefined);
  const enhanced = typeof e.response === 'string' ? /^\d{3}[ -]([245]\.\d{1,3}\.\d{1,3})\b/.exec(e.response)?.[1] : undefined;
  return {
    code: text(e.code),
    originalCode: text(e.originalCode),
    responseCode: typeof e.responseCode === 'number' ? e.responseCode : undefined,
    enhancedStatus: enhanced,
    // Verbs only ("RCPT TO", "AUTH PLAIN"), never an argument.
    command: typeof e.command === 'string' ? /^[A-Z]+(?: [A-Z0-9-]+)?/.exec(e.command)?.[0] : undefined,
    timeoutType: text(e.timeoutType),
    permanent: typeof e.permanent === 'boolean' ? e.permanent : undefined,
  };
}

/** The domain tells an operator which provider refused; the mailbox itself is personal data. */
function domainOf(address: string): string | undefined {
  const at = address.lastIndexOf('@');
  return at < 0 ? undefined : address.slice(at + 1).toLowerCase() || undefined;
}

function within(promise: Promise<void>, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), ms);
    timer.unref();
    promise.then(() => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

function whole(value: number, name: string, min: number): number {
  if (!Number.isSafeInteger(value) || value < min) throw new TypeError(`${name}: expected a whole number >= ${min}, got ${value}`);
  return value;
}
