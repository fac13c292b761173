import { randomUUID } from 'node:crypto';
import { TesseraError } from '@tessera/protocol';
import { checkPasswordPolicy, hashPassword } from '../lib/passwords.js';
import type { ClientInfo, UserRecord } from '../store/records.js';
import type { AuthContext } from './context.js';
import { checkIpLimit } from './rate_limits.js';

/** Letters, digits and `._@+-`, 3 to 64 characters: fits an email address, not markup. */
const USERNAME = /^[\p{L}\p{N}._@+-]{3,64}$/u;

/** Normalises a username (NFKC) and checks its shape. */
export function normalizeUsername(username: string): string {
  const normalized = username.normalize('NFKC');
  if (!USERNAME.test(normalized)) {
    throw new TesseraError(
      'invalid_request',
      'The username must be 3 to 64 letters, digits or . _ @ + - characters.',
    );
  }
  return normalized;
}

/** Creates a user from a public sign-up. */
export async function registerUser(
  ctx: AuthContext,
  input: { username: string; password: string; client: ClientInfo },
): Promise<UserRecord> {
  await checkIpLimit(ctx, input.client);
  if (ctx.config.signup === 'closed') throw new TesseraError('signup_disabled');
  const username = normalizeUsername(input.username);
  checkPasswordPolicy(input.password);
  return createUser(ctx, { username, password: input.password, roles: [], client: input.client });
}

/** Creates a user (sign-up or operator). Throws `username_taken`. */
export async function createUser(
  ctx: AuthContext,
  input: { username: string; password: string; roles: string[]; client: ClientInfo },
): Promise<UserRecord> {
  const passwordHash = await hashPassword(input.password);
  return ctx.store.createUser(
    { id: randomUUID(), username: input.username, passwordHash, roles: input.roles, now: new Date(ctx.now()) },
    { ip: input.client.ip, userAgent: input.client.userAgent },
  );
}
