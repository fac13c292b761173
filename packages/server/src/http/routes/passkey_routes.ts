import type { FastifyInstance } from 'fastify';
import type { AuthContext } from '../../flows/context.js';

/** Passkeys: registration from a session, login without a password, list, rename, delete. */
export function passkeyRoutes(_app: FastifyInstance, _ctx: AuthContext): void {}
