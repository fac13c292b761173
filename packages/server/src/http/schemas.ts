import { ERROR_CODES, type ErrorCode, errorCodes } from '@tessera/protocol';
import type { FastifyRequest } from 'fastify';
import { EMAIL_MAX_LENGTH, EMAIL_PATTERN } from '../flows/emails.js';
import { USERNAME_MESSAGE, USERNAME_PATTERN } from '../flows/usernames.js';
import { PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH } from '../lib/passwords.js';

/**
 * The username rule of `normalizeUsername` (flows/usernames.ts), as far as JSON Schema
 * can say it: after NFKC, 3 to 64 letters, digits or `._@+-`. Register normalises the
 * field before validation (`nfkcUsername`), so the schema sees what the rule sees; the
 * fuzz test checks, on every code point, that the schema refuses nothing the rule
 * accepts and accepts nothing it refuses but for mixed scripts, which no pattern states.
 */
const PASSWORD_MESSAGE = `The password must be ${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters long.`;

/** The revocation feed's cursor (`<epoch>.<position>`, or a legacy time in ms): anything else is malformed. */
export const CURSOR_PATTERN = '^(?:[0-9a-f]{12}\\.[0-9]{1,15}|[0-9]{1,15})?$';

/** Shared schemas, registered once with `addSchema`; routes point at them by `$id`. */
export const SHARED_SCHEMAS = [
  {
    $id: 'ErrorBody',
    type: 'object',
    description: 'Every error: a stable code from the contract and a sentence for people.',
    properties: {
      error: { type: 'string', enum: errorCodes },
      message: { type: 'string' },
      dpop_error: {
        type: 'string',
        enum: ['use_dpop_nonce'],
        description: 'With invalid_dpop_proof: the proof lacked the current server nonce; send it again with the DPoP-Nonce header’s value (RFC 9449 §8).',
      },
    },
    required: ['error', 'message'],
  },
  {
    $id: 'MfaRequired',
    type: 'object',
    description: 'The password was right; a second factor is needed. POST /auth/login/mfa with the mfa_token (5 minutes, one success) and a code.',
    properties: {
      error: { type: 'string', enum: ['mfa_required'] },
      message: { type: 'string' },
      mfa_token: { type: 'string' },
      methods: { type: 'array', items: { type: 'string', enum: ['totp', 'recovery_code'] } },
    },
    required: ['error', 'message', 'mfa_token', 'methods'],
  },
  {
    $id: 'TokenPair',
    type: 'object',
    description: 'Lifetimes in seconds. In cookie mode refresh_token is left out (it is in the httpOnly cookie).',
    properties: {
      access_token: { type: 'string' },
      refresh_token: { type: 'string' },
      token_type: { type: 'string', enum: ['Bearer', 'DPoP'], description: 'DPoP when the pair is bound to the key of the proof sent with the login' },
      expires_in: { type: 'integer' },
      refresh_expires_in: { type: 'integer' },
      session_id: { type: 'string', format: 'uuid' },
    },
    required: ['access_token', 'token_type', 'expires_in', 'refresh_expires_in', 'session_id'],
  },
  {
    $id: 'Username',
    type: 'string',
    minLength: 3,
    maxLength: 64,
    pattern: USERNAME_PATTERN,
    description:
      'Unicode NFKC-normalised first (fullwidth and other compatibility forms fold to their plain form), then 3 to 64 letters, digits or . _ @ + - ' +
      '(code points). The letters must come from one script (Latin may go with Han, Hiragana, Katakana, Hangul or Bopomofo): a mix is ' +
      '400 invalid_request too. A name that looks like an existing one (same confusable skeleton, any case) is 409 username_taken.',
  },
  {
    $id: 'NewPassword',
    type: 'string',
    minLength: PASSWORD_MIN_LENGTH,
    maxLength: PASSWORD_MAX_LENGTH,
    description: `${PASSWORD_MIN_LENGTH} to ${PASSWORD_MAX_LENGTH} characters (code points), anything else weak_password. No composition rules.`,
  },
  {
    $id: 'Email',
    type: 'string',
    minLength: 3,
    maxLength: EMAIL_MAX_LENGTH,
    pattern: EMAIL_PATTERN,
    examples: ['ada@example.com'],
    description: 'An email address (one @, a dotted domain, no spaces, controls or quoting). Unique among users regardless of case.',
  },
  {
    $id: 'AccountToken',
    type: 'string',
    minLength: 1,
    maxLength: 512,
    description: 'The token from a mailed link (after `#reset-password=` or `#verify-email=`).',
  },
  {
    $id: 'User',
    type: 'object',
    description: 'A user as admins see it.',
    properties: {
      id: { type: 'string', format: 'uuid' },
      username: { type: 'string' },
      email: { type: ['string', 'null'] },
      email_verified: { type: 'boolean' },
      roles: { type: 'array', items: { type: 'string' } },
      disabled: { type: 'boolean' },
      mfa: { type: 'boolean', description: 'Whether a second factor is set up.' },
      created_at: { type: 'string', format: 'date-time' },
      active_sessions: { type: 'integer' },
    },
    required: ['id', 'username', 'email', 'email_verified', 'roles', 'disabled', 'mfa', 'created_at', 'active_sessions'],
  },
  {
    $id: 'AuditEvent',
    type: 'object',
    properties: {
      id: { type: 'string' },
      at: { type: 'string', format: 'date-time' },
      event: { type: 'string' },
      user_id: { type: ['string', 'null'] },
      username: { type: ['string', 'null'] },
      session_id: { type: ['string', 'null'] },
      ip: { type: ['string', 'null'] },
      user_agent: { type: ['string', 'null'] },
      outcome: { type: 'string', enum: ['success', 'failure'] },
      reason: { type: ['string', 'null'] },
      actor_id: { type: ['string', 'null'], description: 'The admin who acted on this account, when one did.' },
      actor_username: { type: ['string', 'null'] },
    },
    required: ['id', 'at', 'event', 'user_id', 'username', 'session_id', 'ip', 'user_agent', 'outcome', 'reason'],
  },
  {
    $id: 'Registration',
    type: 'object',
    properties: {
      username: { $ref: 'Username#' },
      password: { $ref: 'NewPassword#' },
      email: { $ref: 'Email#', description: 'Optional: a verification link is mailed to it (503 not_configured without mail).' },
      use_cookie: { type: 'boolean', description: 'Accepted for symmetry with login; register opens no session.' },
    },
    required: ['username', 'password'],
    additionalProperties: false,
  },
  {
    $id: 'Credentials',
    type: 'object',
    properties: {
      username: {
        type: 'string',
        minLength: 1,
        maxLength: 256,
        description: 'As registered (NFKC-normalised and compared case-insensitively); a name no account can have is just unknown: 401 invalid_credentials.',
      },
      password: { type: 'string', maxLength: 4096, description: 'Checked against the hash only: a wrong one of any length is 401 invalid_credentials.' },
      use_cookie: {
        type: 'boolean',
        description: 'Put the refresh token in an httpOnly, SameSite=Strict cookie scoped to /auth instead of the body.',
      },
    },
    required: ['username', 'password'],
    additionalProperties: false,
  },
] as const;

/**
 * Shared schemas that carry one of the server's rules: when the request fails one,
 * the answer is that rule's code and message (the same the flow would give), not
 * the validator's wording. Keyed by `$id`, for the keywords that state the rule;
 * a wrong type stays a plain invalid_request.
 */
const RULES: Record<string, { code: ErrorCode; message: string; keywords: readonly string[] }> = {
  Username: { code: 'invalid_request', message: USERNAME_MESSAGE, keywords: ['pattern', 'minLength', 'maxLength'] },
  NewPassword: { code: 'weak_password', message: PASSWORD_MESSAGE, keywords: ['minLength', 'maxLength'] },
};

/** The rule a failed validation broke, if it is one of `RULES`. */
export function brokenRule(validation: unknown): { code: ErrorCode; message: string } | undefined {
  const first = (Array.isArray(validation) ? validation[0] : undefined) as { schemaPath?: unknown; keyword?: unknown } | undefined;
  if (typeof first?.schemaPath !== 'string') return undefined;
  const id = first.schemaPath.split('#')[0]!;
  const rule = Object.hasOwn(RULES, id) ? RULES[id] : undefined;
  return rule?.keywords.includes(String(first.keyword)) ? rule : undefined;
}

/** preValidation of routes taking a new username: the schema checks what the rule checks, the NFKC form. */
export async function nfkcUsername(request: FastifyRequest): Promise<void> {
  const body = request.body as { username?: unknown } | null | undefined;
  if (typeof body === 'object' && body !== null && !Array.isArray(body) && typeof body.username === 'string') {
    body.username = body.username.normalize('NFKC');
  }
}

/**
 * Error responses of a route, one entry per status, each listing its codes, so
 * the OpenAPI description shows every code a route can answer with. Every route can
 * answer `invalid_request` (a bad URL, a body that is not JSON) and `internal_error`.
 */
export function errorResponses(...codes: ErrorCode[]): Record<number, unknown> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of new Set<ErrorCode>(['invalid_request', ...codes, 'internal_error'])) {
    const status = ERROR_CODES[code].status;
    byStatus.set(status, [...(byStatus.get(status) ?? []), code]);
  }
  return Object.fromEntries(
    [...byStatus].map(([status, list]) => [status, { description: list.join(', '), $ref: 'ErrorBody#' }]),
  );
}

/** Text that PostgreSQL can store (no NUL) in a query parameter. */
export const NO_NUL_PATTERN = '^[^\\u0000]*$';

/** An ISO 8601 time as `Date` reads it: a date, optionally a time and a zone. */
export const ISO_TIME_PATTERN =
  '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])(T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\\.[0-9]{1,9})?)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?)?$';

export const TOKEN_ERRORS: ErrorCode[] = ['invalid_token', 'token_expired', 'token_revoked'];

/** An access token: `Bearer`, or `DPoP` with its proof when the session is bound to a key. */
export const bearerSecurity: { [scheme: string]: string[] }[] = [{ bearer: [] }, { dpop: [] }];

/** The optional body of a route that adds a way into the account: the password again when the session signed in long ago. */
export const REAUTHENTICATION_BODY = {
  type: ['object', 'null'],
  properties: { current_password: { type: 'string', minLength: 1, maxLength: 1024, description: 'required when the session signed in more than 10 minutes ago' } },
  additionalProperties: false,
} as const;
