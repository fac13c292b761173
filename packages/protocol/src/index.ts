export {
  ERROR_CODES,
  type ErrorBody,
  type ErrorCode,
  errorCodes,
  isErrorCode,
  statusOf,
  TOKEN_ERROR_CODES,
} from './error_codes.js';
export { TesseraError } from './tessera_error.js';
export {
  ACCESS_TOKEN_TYPE,
  type AccessTokenClaims,
  REFRESH_COOKIE,
  REFRESH_TOKEN_TYPE,
  type RefreshTokenClaims,
  SECURE_REFRESH_COOKIE,
  SIGNING_ALGORITHMS,
  type SigningAlgorithm,
  type TokenPair,
} from './tokens.js';
