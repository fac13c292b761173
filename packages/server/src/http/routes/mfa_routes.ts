import type { FastifyInstance } from 'fastify';
import type { AuthContext } from '../../flows/context.js';

/** TOTP enrolment and removal, and the login step that takes a code. */
export function mfaRoutes(_app: FastifyInstance, _ctx: AuthContext): void {}
