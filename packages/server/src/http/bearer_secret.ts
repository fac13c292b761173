import { createHash, timingSafeEqual } from 'node:crypto';
import type { FastifyRequest } from 'fastify';

/**
 * An operator's shared secret (the feed secret, the metrics token), kept as a
 * SHA-256 digest: requests are compared digest to digest, so neither the
 * secret's length nor its content leaks through timing.
 */
export class BearerSecret {
  readonly #digest: Buffer;
  constructor(secret: string) {
    this.#digest = digest(secret);
  }

  /** Whether the request carries `Authorization: Bearer <secret>`. */
  presentedBy(request: FastifyRequest): boolean {
    const header = request.headers.authorization;
    const match = typeof header === 'string' ? /^Bearer ([\x21-\x7e]+)$/i.exec(header) : null;
    return timingSafeEqual(digest(match?.[1] ?? ''), this.#digest);
  }
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text).digest();
}
