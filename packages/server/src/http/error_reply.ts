import { TesseraError, TOKEN_ERROR_CODES } from '@tessera/protocol';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { DatabaseUnavailableError, isConnectionFailure } from '../store/database.js';
import { brokenRule } from './schemas.js';

const TOKEN_CODES: ReadonlySet<string> = new Set(TOKEN_ERROR_CODES);

/**
 * The one place where an error becomes an HTTP response. Anything that is not a
 * `TesseraError` or a request Fastify refused is a 5xx: logged in full,
 * answered with `internal_error` and nothing more.
 */
export function sendError(request: FastifyRequest, reply: FastifyReply, error: unknown): FastifyReply {
  const tessera = toTesseraError(error);
  if (tessera.status >= 500) {
    request.log.error({ err: error }, tessera.code === 'unavailable' ? 'database unavailable' : 'unexpected error');
  } else if (tessera.code === 'invalid_token' || tessera.code === 'token_expired') {
    // Why a token was refused is for the operator (the cause names the failed check), not the client.
    request.log.info({ code: tessera.code, reason: causeMessage(tessera) }, 'token refused');
  }
  if (tessera.code === 'invalid_dpop_proof') {
    // RFC 9449 §7.1: the DPoP challenge, with the algorithms proofs may use.
    // RFC 9449 §8: use_dpop_nonce when the proof lacked the current nonce (sent beside it in DPoP-Nonce).
    const error = tessera.details?.dpop_error === 'use_dpop_nonce' ? 'use_dpop_nonce' : 'invalid_dpop_proof';
    reply.header('www-authenticate', `DPoP error="${error}", algs="ES256 EdDSA"`);
  } else if (TOKEN_CODES.has(tessera.code)) {
    // RFC 6750 §3.1: every Bearer token failure is "invalid_token"; the body says which.
    reply.header('www-authenticate', 'Bearer error="invalid_token"');
  } else if (tessera.status === 401) {
    // RFC 7235: every 401 carries a challenge. Without error="invalid_token" a client
    // knows the token itself was fine (a wrong password), so it must not refresh.
    reply.header('www-authenticate', 'Bearer realm="tessera"');
  }
  if (tessera.retryAfter !== undefined) reply.header('retry-after', String(tessera.retryAfter));
  return reply
    .code(tessera.status)
    .header('cache-control', 'no-store')
    .send({ ...tessera.details, error: tessera.code, message: tessera.message });
}

/** Maps anything thrown in a request to a coded error. */
export function toTesseraError(error: unknown): TesseraError {
  if (error instanceof TesseraError) return error;
  if (isDatabaseDown(error)) return new TesseraError('unavailable', undefined, { retryAfter: 5 });
  // A deadlock or serialization failure rolled the transaction back: nothing changed, and a retry will do.
  if (isTransientConflict(error)) return new TesseraError('unavailable', undefined, { retryAfter: 1, cause: error });
  const fastifyError = error as { statusCode?: number; code?: string; validation?: unknown; message?: string };
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    if (status === 404) return new TesseraError('not_found');
    // A schema that states one of the server's rules (username shape, password policy) answers as the rule does.
    const rule = fastifyError.validation ? brokenRule(fastifyError.validation) : undefined;
    if (rule) return new TesseraError(rule.code, rule.message, { cause: error });
    // Validation messages name the field and the rule ("body/password must be string"), never the value.
    const message = fastifyError.validation
      ? `Invalid request: ${fastifyError.message}.`
      : status === 413
        ? 'The request body is too large.'
        : status === 415
          ? 'The request body must be JSON (Content-Type: application/json).'
          : fastifyError.code === 'FST_ERR_CTP_INVALID_JSON_BODY' || error instanceof SyntaxError
            ? 'The request body is not valid JSON.'
            : ERROR_FALLBACK;
    return new TesseraError('invalid_request', message, { cause: error });
  }
  return new TesseraError('internal_error', undefined, { cause: error });
}

const ERROR_FALLBACK = 'The request is malformed.';

/** Connection-level failures of either driver: the database is not answering. */
function isTransientConflict(error: unknown): boolean {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return code === '40P01' || code === '40001';
}

function isDatabaseDown(error: unknown): boolean {
  if (error instanceof DatabaseUnavailableError) return true;
  return typeof error === 'object' && error !== null && isConnectionFailure((error as { code?: unknown }).code);
}

function causeMessage(error: Error): string | undefined {
  const cause = error.cause as { message?: unknown; code?: unknown } | undefined;
  if (!cause) return undefined;
  return typeof cause.code === 'string' ? `${cause.code}: ${String(cause.message)}` : String(cause.message);
}
