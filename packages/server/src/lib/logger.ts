import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';

/**
 * JSON logs with every place a secret could sit redacted. Requests are logged
 * by path only: a query string never reaches a log line.
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
  return stream ? pino(options, stream as DestinationStream) : pino(options);
}
