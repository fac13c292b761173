import type { AddressInfo } from 'node:net';
import { simpleParser } from 'mailparser';
import { SMTPServer, type SMTPServerOptions } from 'smtp-server';
import { createTestCertificate } from './self_signed_cert.js';

/** One message the test SMTP server accepted, parsed. */
export interface ReceivedMail {
  /** Envelope recipients (RCPT TO), the addresses the message was actually delivered to. */
  to: string[];
  /** Envelope sender (MAIL FROM). */
  envelopeFrom: string;
  /** The `From:` header, decoded, as `Name <address>` (or the bare address), e.g. `Tessera <no-reply@localhost>`. */
  from: string;
  subject: string;
  text: string;
  /** The HTML part; empty when the message had none. */
  html: string;
  /** The message as it came over the wire (headers and MIME parts). */
  raw: string;
  /** Whether the session was under TLS when the message came (implicit TLS or after STARTTLS). */
  secure: boolean;
  /** The user the client authenticated as; undefined without AUTH. */
  user: string | undefined;
  /** The first http(s) link in the plain-text body, fragment included; throws when there is none. */
  firstLink(): string;
}

export interface SmtpServerOptions {
  /**
   * `none` (default): plain SMTP, STARTTLS not offered. `starttls`: offered, with a
   * certificate from a fresh test CA (`ca` on the result). `implicit`: TLS from the
   * first byte, for `smtps://`.
   */
  tls?: 'starttls' | 'implicit' | 'none';
  /** Require AUTH with these credentials (they are put in `url`). Without, AUTH is optional. */
  auth?: { user: string; pass: string };
  /** The first N deliveries are refused with `451` (a temporary failure), to exercise retries. */
  failFirst?: number;
  /** Recipients to refuse at RCPT TO with `550 5.1.1 <address>: …` (a permanent failure that quotes the address). */
  rejectRecipient?: (address: string) => boolean;
}

export interface TestSmtpServer {
  /** `smtp://` or `smtps://` on 127.0.0.1, with the credentials when `auth` was given. */
  url: string;
  port: number;
  /** The CA that signed the server's certificate (to trust via `tls.ca`); undefined for `tls: 'none'`. */
  ca: string | undefined;
  /** Every accepted message, in order of arrival. */
  messages: ReceivedMail[];
  /** Messages that reached DATA, refused ones included. */
  readonly attempts: number;
  /** The first message (already received or still to come) that matches; rejects after `timeoutMs` (default 5000). */
  waitForMail(predicate?: (m: ReceivedMail) => boolean, timeoutMs?: number): Promise<ReceivedMail>;
  close(): Promise<void>;
}

/**
 * A real SMTP server (`smtp-server`) on a free loopback port that keeps what it receives.
 * A message is in `messages` before the client is told it was accepted, so a sender that
 * awaited its delivery can assert right away.
 *
 * @example
 * const smtp = await startSmtpServer();
 * // ... start the auth server with smtpUrl: smtp.url, ask for a reset
 * const mail = await smtp.waitForMail((m) => m.to.includes('ada@example.com'));
 * const link = new URL(mail.firstLink());
 * await smtp.close();
 */
export async function startSmtpServer(options: SmtpServerOptions = {}): Promise<TestSmtpServer> {
  const mode = options.tls ?? 'none';
  const failFirst = options.failFirst ?? 0;
  const certificate = mode === 'none' ? undefined : createTestCertificate();
  const messages: ReceivedMail[] = [];
  const waiters = new Set<{ predicate: (m: ReceivedMail) => boolean; resolve: (m: ReceivedMail) => void; reject: (e: Error) => void }>();
  let attempts = 0;

  const serverOptions: SMTPServerOptions = {
    logger: false,
    secure: mode === 'implicit',
    ...(certificate ? { key: certificate.key, cert: certificate.cert } : {}),
    // Without a certificate smtp-server would still offer STARTTLS with its built-in one.
    ...(mode === 'none' ? { disabledCommands: ['STARTTLS'] } : {}),
    authOptional: !options.auth,
    allowInsecureAuth: mode === 'none',
    closeTimeout: 1000,
    // A reverse DNS lookup of 127.0.0.1 per connection only slows tests down.
    disableReverseLookup: true,
    onAuth(auth, _session, callback) {
      if (options.auth && auth.username === options.auth.user && auth.password === options.auth.pass) {
        callback(null, { user: auth.username });
      } else {
        callback(Object.assign(new Error('Invalid username or password'), { responseCode: 535 }));
      }
    },
    onRcptTo(address, _session, callback) {
      if (options.rejectRecipient?.(address.address)) {
        callback(Object.assign(new Error(`5.1.1 <${address.address}>: Recipient address rejected: User unknown`), { responseCode: 550 }));
      } else {
        callback();
      }
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        attempts += 1;
        if (attempts <= failFirst) {
          callback(Object.assign(new Error('Temporary failure, try again later'), { responseCode: 451 }));
          return;
        }
        const raw = Buffer.concat(chunks);
        simpleParser(raw).then(
          (parsed) => {
            const text = parsed.text ?? '';
            const mail: ReceivedMail = {
              to: session.envelope.rcptTo.map((a) => a.address),
              envelopeFrom: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
              from: (parsed.from?.value ?? []).map((a) => (a.name ? `${a.name} <${a.address}>` : (a.address ?? ''))).join(', '),
              subject: parsed.subject ?? '',
              text,
              html: parsed.html || '',
              raw: raw.toString('utf8'),
              secure: session.secure,
              user: typeof session.user === 'string' ? session.user : undefined,
              firstLink() {
                const link = /https?:\/\/[^\s<>"]+/.exec(text)?.[0];
                if (!link) throw new Error(`no link in the mail's text: ${JSON.stringify(text.slice(0, 200))}`);
                return link;
              },
            };
            messages.push(mail);
            for (const waiter of waiters) if (waiter.predicate(mail)) waiter.resolve(mail);
            callback();
          },
          (error: Error) => callback(error),
        );
      });
    },
  };
  const server = new SMTPServer(serverOptions);
  await new Promise<void>((resolve, reject) => {
    server.server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.server.address() as AddressInfo;
  const credentials = options.auth ? `${encodeURIComponent(options.auth.user)}:${encodeURIComponent(options.auth.pass)}@` : '';

  return {
    url: `${mode === 'implicit' ? 'smtps' : 'smtp'}://${credentials}127.0.0.1:${port}`,
    port,
    ca: certificate?.ca,
    messages,
    get attempts() {
      return attempts;
    },
    waitForMail(predicate = () => true, timeoutMs = 5000) {
      const found = messages.find(predicate);
      if (found) return Promise.resolve(found);
      return new Promise<ReceivedMail>((resolve, reject) => {
        const waiter = {
          predicate,
          resolve: (m: ReceivedMail) => settle(() => resolve(m)),
          reject: (e: Error) => settle(() => reject(e)),
        };
        const timer = setTimeout(() => waiter.reject(new Error(`no matching mail within ${timeoutMs} ms (${messages.length} received)`)), timeoutMs);
        function settle(action: () => void) {
          clearTimeout(timer);
          waiters.delete(waiter);
          action();
        }
        waiters.add(waiter);
      });
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const waiter of waiters) waiter.reject(new Error('the SMTP server was closed'));
        server.close(() => resolve());
      }),
  };
}
