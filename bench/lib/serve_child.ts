import { type ChildProcess, spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';

/** The CLI the benchmarks run: the built one (`npm run build`), as users run it. */
export const TESSERA_BIN = new URL('../../packages/cli/bin/tessera.js', import.meta.url).pathname;

/** A `tessera serve` child process that printed "listening on <url>". */
export interface ServeChild {
  child: ChildProcess;
  pid: number;
  url: URL;
  /** What it wrote to stderr so far (and keeps appending). */
  stderr: string[];
  /** From spawn to the "listening" line. */
  startSeconds: number;
}

/**
 * Spawns `tessera serve --port 0 <args>` (after `nodeFlags`) and resolves once it
 * prints the URL it listens on; rejects (and kills it) if it exits first or does not
 * listen within `timeoutMs`.
 */
export async function spawnServe(args: string[], options: { nodeFlags?: string[]; timeoutMs?: number; cwd?: string } = {}): Promise<ServeChild> {
  const t = performance.now();
  const child = spawn(process.execPath, [...(options.nodeFlags ?? []), TESSERA_BIN, 'serve', '--port', '0', ...args], {
    ...(options.cwd ? { cwd: options.cwd } : {}),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  child.stderr!.setEncoding('utf8').on('data', (s: string) => stderr.push(s));
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`tessera serve did not listen within ${options.timeoutMs ?? 90_000} ms: ${out}${stderr.join('')}`));
    }, options.timeoutMs ?? 90_000);
    child.stdout!.setEncoding('utf8').on('data', (s: string) => {
      out += s;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`tessera serve exited with ${code}: ${out}${stderr.join('')}`));
    });
  });
  return { child, pid: child.pid!, url: new URL(url), stderr, startSeconds: (performance.now() - t) / 1000 };
}

/** SIGTERM (a graceful stop), SIGKILL after `graceMs`; resolves when it has exited. */
export async function stopServe(server: ServeChild, graceMs = 15_000): Promise<void> {
  const { child } = server;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
