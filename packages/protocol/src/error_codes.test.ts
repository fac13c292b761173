import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { ERROR_CODES, errorCodes, isErrorCode, statusOf, TesseraError, TOKEN_ERROR_CODES } from './index.js';

test('the README table, the contract and the registry agree on every code and status', () => {
  const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');
  const rows = [...readme.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
  assert.deepEqual(rows, errorCodes.map((code) => [code, statusOf(code)]));
  // The contract sits beside the repository on developer machines; a clean CI clone may not have it.
  const contractFile = new URL('../../../../shared/docs/CONTRACT.md', import.meta.url);
  if (!existsSync(contractFile)) return;
  const contract = readFileSync(contractFile, 'utf8');
  const contractRows = [...contract.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \|/gm)].map((m) => [m[1], Number(m[2])]);
  if (contractRows.length > 0) assert.deepEqual(rows, contractRows);
});

test('TesseraError carries the code, its status and a safe default message', () => {
  const error = new TesseraError('rate_limited', undefined, { retryAfter: 30 });
  assert.equal(error.code, 'rate_limited');
  assert.equal(error.status, 429);
  assert.equal(error.retryAfter, 30);
  assert.equal(error.message, ERROR_CODES.rate_limited.message);
  assert.equal(new TesseraError('invalid_credentials').message, 'Invalid username or password.');
  assert.ok(isErrorCode('token_reused'));
  assert.ok(!isErrorCode('toString'));
  assert.ok(TOKEN_ERROR_CODES.every((code) => statusOf(code) === 401));
});
