#!/usr/bin/env node
// Bundle sizes of what ships to browsers: @tessera/client (minified, gzip -9, as an app
// bundler would include it) and the built web app (apps/web/dist, from `npm run build`).
import { readdirSync, readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { buildSync } from 'esbuild';

const root = new URL('..', import.meta.url).pathname;
const rows = [];
for (const [name, entry] of [
  ['@tessera/client', 'packages/client/src/index.ts'],
  ['@tessera/client/axios', 'packages/client/src/axios.ts'],
]) {
  const out = buildSync({ entryPoints: [root + entry], bundle: true, minify: true, format: 'esm', write: false, platform: 'browser', target: 'es2022' });
  const code = out.outputFiles[0].contents;
  rows.push([name, code.length, gzipSync(code, { level: 9 }).length]);
}
const assets = `${root}apps/web/dist/assets`;
for (const file of readdirSync(assets)) {
  const bytes = readFileSync(`${assets}/${file}`);
  rows.push([`apps/web ${file.replace(/-[\w-]+\./, '.')}`, bytes.length, gzipSync(bytes, { level: 9 }).length]);
}
console.log('| bundle | minified | gzip |\n|---|---:|---:|');
for (const [name, raw, gz] of rows) console.log(`| ${name} | ${(raw / 1024).toFixed(1)} kB | ${(gz / 1024).toFixed(1)} kB |`);
