import type { ClientInfo, UserRecord } from '../store/records.js';
import type { AuditBase } from '../store/users_store.js';

/**
 * Who makes a change to an account: the user itself, an admin through the admin
 * API (named in the audit row), or an operator through the CLI.
 */
export type Actor = { kind: 'admin'; user: UserRecord; client: ClientInfo } | { kind: 'operator' };

/** The CLI's requests: no address, its own user agent. */
export const OPERATOR: Actor = { kind: 'operator' };

/** The audit fields that say who acted and from where. */
export function actorAudit(actor: Actor): AuditBase {
  if (actor.kind === 'operator') return { ip: null, userAgent: 'tessera-cli', actorId: null, actorUsername: null };
  return { ip: actor.client.ip, userAgent: actor.client.userAgent, actorId: actor.user.id, actorUsername: actor.user.username };
}
