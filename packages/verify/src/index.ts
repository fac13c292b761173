export { ACCESS_TOKEN_TYPE, type AccessTokenClaims, type ErrorCode, TesseraError } from '@tessera/protocol';
export { type AuthScheme, authScheme, checkRole, errorResponse, parseAuthorization, parseBearer } from './bearer.js';
export { createVerifier, type DpopOptions, type RequestCredentials, type RevocationOptions, type Verifier, type VerifierOptions } from './create_verifier.js';
export { VERIFY_DEFAULTS } from './defaults.js';
export { accessTokenHash, DPOP_ALGORITHMS, DPOP_MAX_AGE_SECONDS, DPOP_PROOF_TYPE, type DpopProofCheck, type DpopReplayCache, memoryReplayCache, verifyDpopProof } from './dpop_proof.js';
export { publicKeyMembers } from './public_key_members.js';
export { type TokenHeader, tokenHeaderReader } from './token_header.js';
export { checkTokenTimes } from './token_times.js';
