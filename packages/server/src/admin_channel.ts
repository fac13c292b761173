import { chmod, rm } from 'node:fs/promises';
import { connect, createServer, type Server } from 'node:net';
import { TesseraError } from '@tessera/protocol';
import { ADMIN_OPS, type AdminHost, type AdminRequest, runAdminOperation } from './operations.js';

/** The admin socket's name inside the data directory. */
export const ADMIN_SOCKET = 'admin.sock';

/**
 * The local admin channel of a running server: a Unix socket inside the data
 * directory, mode 0600 in a 0700 directory, so only the data directory's owner can
 * open it. One JSON request per line, one JSON answer per line.
 */
export async function startAdminChannel(path: string, host: AdminHost): Promise<{ close(): Promise<void> }> {
  await rm(path, { force: true });
  const server: Server = createServer((socket) => {
    let buffer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      if (buffer.length > 64 * 1024) socket.destroy();
      const end = buffer.indexOf('\n');
      if (end < 0) return;
      const line = buffer.slice(0, end);
      buffer = '';
      void answer(line).then((reply) => socket.end(`${JSON.stringify(reply)}\n`));
    });
    socket.on('error', () => {});
  });
  async function answer(line: string): Promise<unknown> {
    try {
      const request = JSON.parse(line) as AdminRequest;
      if (typeof request !== 'object' || request === null || !ADMIN_OPS.includes(request.op)) throw new TesseraError('invalid_request', 'Unknown operation.');
      return { ok: true, result: await runAdminOperation(host, request) };
    } catch (error) {
      const tessera = error instanceof TesseraError ? error : new TesseraError('internal_error');
      return { ok: false, error: { code: tessera.code, message: tessera.message } };
    }
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  await chmod(path, 0o600);
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        void rm(path, { force: true });
      }),
  };
}

/** Sends one request to a running server's admin channel. */
export function callAdminChannel(path: string, request: AdminRequest, timeoutMs = 30_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect(path);
    let buffer = '';
    socket.setEncoding('utf8');
    socket.setTimeout(timeoutMs, () => socket.destroy(new Error('the running server did not answer')));
    socket.on('connect', () => socket.write(`${JSON.stringify(request)}\n`));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
    });
    socket.on('error', reject);
    socket.on('close', () => {
      try {
        const reply = JSON.parse(buffer) as { ok: boolean; result?: unknown; error?: { code: string; message: string } };
        if (reply.ok) resolve(reply.result);
        else reject(new TesseraError(reply.error!.code as TesseraError['code'], reply.error!.message));
      } catch {
        reject(new Error('the running server gave no answer'));
      }
    });
  });
}
