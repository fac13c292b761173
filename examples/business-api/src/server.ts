#!/usr/bin/env node
import { buildBusinessApi } from './app.js';

const port = Number(process.env.PORT ?? 4001);
const host = process.env.HOST ?? '127.0.0.1';
const app = await buildBusinessApi({
  issuer: process.env.TESSERA_ISSUER ?? 'http://localhost:4000',
  authUrl: process.env.TESSERA_AUTH_URL,
  audience: process.env.TESSERA_AUDIENCE,
  feedSecret: process.env.TESSERA_FEED_SECRET || undefined,
  publicUrl: process.env.PUBLIC_URL || undefined,
});
await app.listen({ port, host });
process.stdout.write(`Example business API listening on http://${host}:${port} (GET /api/public, /api/profile, /api/admin)\n`);
// Stop taking requests, let those in flight finish (at most 5 s), then exit.
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    setTimeout(() => process.exit(0), 5000).unref();
    app.close().then(() => process.exit(0), () => process.exit(1));
  });
}
