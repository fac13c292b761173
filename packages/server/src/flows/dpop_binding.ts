import { TesseraError } from '@tessera/protocol';
import { verifyDpopProof } from '@tessera/verify';
import type { ClientInfo } from '../store/records.js';
import type { AuthContext } from './context.js';
import { checkIpAllowance } from './rate_limits.js';

/** What a request says about DPoP: its proof header (if any), method and absolute URL. */
export interface DpopRequest {
  /** The `DPoP` header; an array when the request sent it more than once (refused). */
  proof: string | string[] | undefined;
  method: string;
  url: string;
}

/**
 * The key a new session binds to: the thumbprint of a valid proof sent with the
 * login, or undefined when the login sent none (a bearer session). A proof that is
 * sent but wrong is refused, never ignored.
 */
export async function bindingKey(ctx: AuthContext, dpop: DpopRequest | undefined, client: ClientInfo): Promise<string | undefined> {
  if (dpop?.proof === undefined) return undefined;
  // Any key makes a valid proof here: a client over its limit must not get to fill the replay cache.
  await checkIpAllowance(ctx, client);
  return (await checkProof(ctx, dpop, { client })).jkt;
}

/**
 * A bound session's token used (a refresh, an access token at the auth server):
 * requires a fresh proof by the bound key, with `ath` for an access token. Refused
 * proofs are audited (`dpop.rejected`) and change nothing.
 */
export async function requireProof(
  ctx: AuthContext,
  dpop: DpopRequest | undefined,
  input: { jkt: string; accessToken?: string; userId: string; sessionId: string; client: ClientInfo },
): Promise<void> {
  await checkProof(ctx, dpop, input);
}

async function checkProof(
  ctx: AuthContext,
  dpop: DpopRequest | undefined,
  input: { jkt?: string; accessToken?: string; userId?: string; sessionId?: string; client: ClientInfo },
): Promise<{ jkt: string }> {
  try {
    if (Array.isArray(dpop?.proof)) throw new TesseraError('invalid_dpop_proof', 'DPoP proof refused: more than one DPoP header.');
    return await verifyDpopProof({
      proof: dpop?.proof,
      method: dpop?.method ?? '',
      url: dpop?.url ?? '',
      ...(input.accessToken === undefined ? {} : { accessToken: input.accessToken }),
      ...(input.jkt === undefined ? {} : { expectedJkt: input.jkt }),
      now: ctx.now(),
      ...(ctx.dpopNonces ? { nonce: ctx.dpopNonces.accepted() } : {}),
      replay: ctx.dpopReplay,
    });
  } catch (error) {
    if (!(error instanceof TesseraError)) throw error;
    const key = `dpop:${input.sessionId ?? input.client.ip ?? 'unknown'}`;
    if (ctx.limits.reported(key, ctx.now())) {
      await ctx.store.audit.append(new Date(ctx.now()), [
        {
          event: 'dpop.rejected',
          outcome: 'failure',
          userId: input.userId ?? null,
          sessionId: input.sessionId ?? null,
          ip: input.client.ip,
          userAgent: input.client.userAgent,
          reason: error.message.replace(/^DPoP proof refused: /, '').replace(/\.$/, ''),
        },
      ]);
    }
    throw error;
  }
}
