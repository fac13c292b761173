/**
 * The registry of error codes every Tessera package speaks. The codes and their
 * HTTP statuses are the public contract (CONTRACT.md, "Error codes"): never rename
 * or reuse one, only add.
 */
export const ERROR_CODES = {
  invalid_request: { status: 400, message: 'The request is malformed.' },
  weak_password: { status: 400, message: 'The password does not meet the password policy.' },
  username_taken: { status: 409, message: 'That username is already taken.' },
  signup_disabled: { status: 403, message: 'Sign-up is closed on this server.' },
  invalid_credentials: { status: 401, message: 'Invalid username or password.' },
  account_disabled: { status: 403, message: 'This account is disabled.' },
  invalid_token: { status: 401, message: 'The token is missing or invalid.' },
  token_expired: { status: 401, message: 'The token has expired.' },
  token_revoked: { status: 401, message: 'The session of this token has ended.' },
  token_reused: {
    status: 401,
    message: 'This refresh token was already used; the session has been ended for safety.',
  },
  insufficient_scope: { status: 403, message: 'You do not have the role this needs.' },
  not_found: { status: 404, message: 'Not found.' },
  forbidden: { status: 403, message: 'This needs the admin role.' },
  mfa_required: { status: 401, message: 'A second factor is needed to finish signing in.' },
  invalid_code: { status: 401, message: 'That code is wrong, used or expired.' },
  invalid_dpop_proof: { status: 401, message: 'The DPoP proof is missing or invalid for this session.' },
  invalid_reset_token: { status: 400, message: 'That link is unknown, used or expired.' },
  email_taken: { status: 409, message: 'That email address is already in use.' },
  not_configured: { status: 503, message: 'This server is not set up to send mail.' },
  rate_limited: { status: 429, message: 'Too many attempts; try again later.' },
  unavailable: { status: 503, message: 'The service is temporarily unavailable; try again shortly.' },
  internal_error: { status: 500, message: 'Something went wrong on our side.' },
} as const satisfies Record<string, { status: number; message: string }>;

/** A stable, machine-readable error code from the contract's table. */
export type ErrorCode = keyof typeof ERROR_CODES;

/** Every error code, in the contract's order. */
export const errorCodes = Object.keys(ERROR_CODES) as ErrorCode[];

/** The HTTP status a code is sent with. */
export function statusOf(code: ErrorCode): number {
  return ERROR_CODES[code].status;
}

/** Narrow an unknown string (say, from a response body) to a known code. */
export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_CODES, value);
}

/** The codes that mean "this Bearer token will not do": a 401 with `WWW-Authenticate`. */
export const TOKEN_ERROR_CODES = [
  'invalid_token',
  'token_expired',
  'token_revoked',
  'token_reused',
] as const satisfies readonly ErrorCode[];

/** The JSON body of every error response. */
export interface ErrorBody {
  error: ErrorCode;
  message: string;
}
