#!/usr/bin/env node
// `npm start`: the auth server on :4000 (data in ./.tessera) and the example
// business API on :4001, side by side. Ctrl-C stops both.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';

const root = new URL('..', import.meta.url).pathname;
// The revocation feed answers only holders of its secret: one for this run, shared
// by the auth server and the business API (yours, if you set TESSERA_FEED_SECRET).
const env = { ...process.env, TESSERA_FEED_SECRET: process.env.TESSERA_FEED_SECRET || randomBytes(32).toString('base64url') };
const children = [
  spawn(process.execPath, ['packages/cli/dist/bin.js', 'serve', ...process.argv.slice(2)], { cwd: root, stdio: 'inherit', env }),
  spawn(process.execPath, ['examples/business-api/dist/server.js'], { cwd: root, stdio: 'inherit', env }),
];
let exiting = false;
const stop = (code) => {
  if (exiting) return;
  exiting = true;
  for (const child of children) child.kill('SIGTERM');
  process.exitCode = code;
};
for (const child of children) child.on('exit', (code) => stop(code ?? 0));
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));
