export { ACCESS_TOKEN_TYPE, type AccessTokenClaims, type ErrorCode, TesseraError } from '@tessera/protocol';
export { checkRole, errorResponse, parseBearer } from './bearer.js';
export { createVerifier, type RevocationOptions, type Verifier, type VerifierOptions } from './create_verifier.js';
export { VERIFY_DEFAULTS } from './defaults.js';
