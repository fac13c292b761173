#!/usr/bin/env node
// The `tessera` command. This file is committed, not built, so that npm links the
// bin on the very first `npm install` of a fresh clone (npm links workspace bins
// before `prepare` builds dist/). It runs the built CLI.
import { existsSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';

// Loading the CLI allocates briefly but a lot, and V8 answers by doubling the young
// generation up to 32 MB, which an idle `tessera serve` then keeps for 30-40 s. Held at
// its initial size while modules load and the server starts; `serve` lets it grow
// again once listening (bench/README.md, idle RSS).
setFlagsFromString('--semi-space-growth-factor=1');

const entry = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('tessera: the CLI is not built (packages/cli/dist is missing): run `npm run build` at the repository root.\n');
  process.exit(1);
}
await import(entry.href);
