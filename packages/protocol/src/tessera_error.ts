import { ERROR_CODES, type ErrorCode } from './error_codes.js';

/**
 * The one error type of Tessera's packages: untrusted input (a request, a token)
 * that cannot be served yields a `TesseraError` whose `code` callers can `switch` on.
 * The message is safe to show to a client: it never holds a token, a password
 * or a query parameter.
 *
 * @example
 * try { await verifier.verify(token) } catch (err) {
 *   if (err instanceof TesseraError && err.code === 'token_expired') refresh()
 * }
 */
export class TesseraError extends Error {
  override readonly name = 'TesseraError';
  readonly code: ErrorCode;
  /** HTTP status of the code, from the registry. */
  readonly status: number;
  /** Seconds after which a retry makes sense (`rate_limited`, `unavailable`). */
  readonly retryAfter: number | undefined;
  /** More fields of the error body, beside `error` and `message` (`mfa_required` carries `mfa_token` and `methods`). */
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(
    code: ErrorCode,
    message: string = ERROR_CODES[code].message,
    options: { cause?: unknown; retryAfter?: number; details?: Record<string, unknown> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.status = ERROR_CODES[code].status;
    this.retryAfter = options.retryAfter;
    this.details = options.details;
  }
}
