import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { QUIET_ENV } from '../support/serve_process.js';

const root = new URL('../../', import.meta.url).pathname;
const run = promisify(execFile);
const WORKSPACES = ['packages/protocol', 'packages/server', 'packages/verify', 'packages/client', 'packages/cli', 'apps/web'];

/** Starts a process and resolves with the first http URL it prints. */
function startPrinting(command: string, args: string[], cwd: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(command, args, { cwd, env: { ...process.env, ...QUIET_ENV }, stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  return new Promise((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      output += chunk;
      const match = /(http:\/\/[\w.:[\]-]+)/.exec(output);
      if (match) resolve({ child, url: match[1] as string });
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}: ${output}`)));
  });
}

async function stop(child: ChildProcess | undefined): Promise<void> {
  if (!child || child.exitCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  await exited;
}

// What a team gets from `npm install @tessera/...`: the packed tarballs, installed into a
// project of its own outside this repository (no workspace links, no tessera-source condition).
test('the packed packages work outside the repository: tessera serve with its login page, an Express API with @tessera/verify, @tessera/client, and their types', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-packed-'));
  let serve: ChildProcess | undefined;
  let api: ChildProcess | undefined;
  try {
    const tarballs: Record<string, string> = {};
    for (const workspace of WORKSPACES) {
      const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', dir, '-w', workspace], { cwd: root });
      const [packed] = JSON.parse(stdout) as { name: string; filename: string; files: { path: string }[] }[];
      assert.ok(packed);
      tarballs[packed.name] = `file:${join(dir, packed.filename)}`;
      assert.ok(!packed.files.some((f) => f.path.includes('.tessera/') || f.path.endsWith('.tsbuildinfo')), `${packed.name} ships build leftovers`);
      if (packed.name === '@tessera/web') assert.ok(packed.files.some((f) => f.path === 'dist/index.html'), '@tessera/web ships its built page');
      if (packed.name === '@tessera/server') assert.ok(packed.files.some((f) => f.path === 'dist/pglite-template.tar.gz'), '@tessera/server ships the data-dir template');
    }
    const project = join(dir, 'project');
    await run('mkdir', [project]);
    await writeFile(
      join(project, 'package.json'),
      JSON.stringify({ name: 'a-product', private: true, type: 'module', dependencies: { ...tarballs, express: '^5.1.0', '@types/express': '^5.0.0', '@types/node': '^20.19.0' } }),
    );
    await run('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', '--loglevel=error'], { cwd: project, timeout: 240_000 });

    await writeFile(
      join(project, 'api.ts'),
      `import express from 'express';
import { createVerifier } from '@tessera/verify';
import { requireAuth } from '@tessera/verify/express';
const [issuer, secret] = process.argv.slice(2) as [string, string];
const verifier = createVerifier({ issuer, audience: 'tessera-api', jwksUri: issuer + '/.well-known/jwks.json', revocation: { secret } });
const app = express();
app.get('/api/profile', requireAuth(verifier), (req, res) => { res.json({ hello: req.auth!.username }); });
const server = app.listen(0, '127.0.0.1', () => {
  const address = server.address();
  if (address && typeof address === 'object') console.log('http://127.0.0.1:' + address.port);
});
`,
    );
    await writeFile(
      join(project, 'client.ts'),
      `import { createAuthClient } from '@tessera/client';
const [issuer, api] = process.argv.slice(2) as [string, string];
const auth = createAuthClient({ baseUrl: issuer, apiOrigins: [api] });
await auth.register('alice', 'correct horse battery');
const before = await auth.fetch(api + '/api/profile');
console.log(JSON.stringify({ status: before.status, body: await before.json() }));
await auth.logout();
`,
    );
    // The types resolve from the packed declarations, with Node's own module resolution.
    await writeFile(
      join(project, 'tsconfig.json'),
      JSON.stringify({ compilerOptions: { strict: true, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', outDir: 'out', skipLibCheck: true, types: ['node'] }, files: ['api.ts', 'client.ts'] }),
    );
    await run(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', project], { cwd: project }).catch((error: { stdout?: string }) => {
      assert.fail(`the packed types do not check: ${error.stdout}`);
    });

    const secret = 'packed-feed-secret-0123456789';
    const started = await startPrinting(join(project, 'node_modules/.bin/tessera'), ['serve', '--data-dir', join(project, '.tessera'), '--port', '0', '--feed-secret', secret], project);
    serve = started.child;
    const issuer = started.url.replace('127.0.0.1', 'localhost');
    const page = await fetch(`${started.url}/`);
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    assert.match(await page.text(), /<script[^>]+src="\/assets\//);

    const apiStarted = await startPrinting(process.execPath, [join(project, 'out/api.js'), issuer, secret], project);
    api = apiStarted.child;
    const { stdout } = await run(process.execPath, [join(project, 'out/client.js'), issuer, apiStarted.url], { cwd: project });
    assert.deepEqual(JSON.parse(stdout), { status: 200, body: { hello: 'alice' } });
  } finally {
    await stop(api);
    await stop(serve);
    await rm(dir, { recursive: true, force: true });
  }
});
