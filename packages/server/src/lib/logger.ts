import { createRequire } from 'node:module';
import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';
import type PinoPretty from 'pino-pretty';

/**
 * pino-pretty and its 30 modules load only for a terminal: a server whose output is
 * piped (a service, a container) never needs them. It is CommonJS, so `require` loads
 * it synchronously and the logger is ready at once.
 */
function prettyStream(options: PinoPretty.PrettyOptions): DestinationStream {
  const pretty = createRequire(import.meta.url)('pino-pretty') as typeof PinoPretty;
  return pretty(options);
}

/**
 * JSON logs with every place a secret could sit redacted. Requests are logged
 * by path only: a query string never reaches a log line. On a terminal the same
 * lines are printed for people (pino-pretty); piped or redirected, they stay JSON
 * for the log pipeline.
 */
export function createLogger(level: false | string = 'info', stream?: NodeJS.WritableStream): Logger {
  const options: LoggerOptions = {
    level: level === false ? 'silent' : level,
    redact: {
      paths: [
        'req.headers.authorization',
        'req.headers.cookie',
        'res.headers["set-cookie"]',
        '*.password',
        '*.new_password',
        '*.current_password',
        '*.refresh_token',
        '*.access_token',
        '*.passwordHash',
        '*.password_hash',
        '*.token',
      ],
      censor: '[redacted]',
    },
    serializers: {
      req: (req: { id?: string; method?: string; url?: string; ip?: string }) => ({
        id: req.id,
        method: req.method,
        path: req.url?.split('?')[0],
        ip: req.ip,
      }),
      res: (res: { statusCode?: number }) => ({ statusCode: res.statusCode }),
      // Database errors carry the statement's parameters (hashes, ids): keep the code and message only.
      err: (err: Error & { code?: unknown }) => ({
        type: err.name,
        message: err.message,
        code: err.code,
        stack: err.stack,
      }),
    },
  };
  if (stream) return pino(options, stream as DestinationStream);
  if (process.stdout.isTTY) return pino(options, prettyStream({ colorize: true, sync: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' }));
  return pino(options);
}
