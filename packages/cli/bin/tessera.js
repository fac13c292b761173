#!/usr/bin/env node
// The `tessera` command. This file is committed, not built, so that npm links the
// bin on the very first `npm install` of a fresh clone (npm links workspace bins
// before `prepare` builds dist/). It runs the built CLI.
import { existsSync } from 'node:fs';

const entry = new URL('../dist/bin.js', import.meta.url);
if (!existsSync(entry)) {
  process.stderr.write('tessera: the CLI is not built (packages/cli/dist is missing): run `npm run build` at the repository root.\n');
  process.exit(1);
}
await import(entry.href);
