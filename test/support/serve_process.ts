import { type ChildProcess, spawn } from 'node:child_process';

/** The real `tessera` command, as `npx tessera` runs it (built by `npm install`/`npm test`). */
export const TESSERA_BIN = new URL('../../packages/cli/dist/bin.js', import.meta.url).pathname;

/** Quiet logs and limits no test trips by accident. */
export const QUIET_ENV = { TESSERA_LOG_LEVEL: 'silent', TESSERA_RATE_LIMIT: 'ip=10000/1m,user=10000/1m' };

export interface ServeProcess {
  child: ChildProcess;
  url: string;
  /** Everything it printed to stdout so far (the log lines included). */
  output(): string;
  /** SIGTERM, resolving to the exit code. */
  stop(): Promise<number | null>;
}

/** Starts `tessera serve --port 0 …args` as a real process and waits for the URL it prints. */
export async function serveProcess(args: string[], env: Record<string, string> = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [TESSERA_BIN, 'serve', '--port', '0', ...args], { env: { ...process.env, ...QUIET_ENV, ...env } });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  let out = '';
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const match = /listening on (http:\/\/\S+)/.exec(out);
      if (match) resolve(match[1]!);
    });
    child.on('exit', (code) => reject(new Error(`serve exited with ${code}: ${stderr}`)));
  });
  return {
    child,
    url,
    output: () => out,
    stop: () =>
      new Promise((resolve) => {
        if (child.exitCode !== null) return resolve(child.exitCode);
        child.once('exit', (code) => resolve(code));
        child.kill('SIGTERM');
      }),
  };
}
