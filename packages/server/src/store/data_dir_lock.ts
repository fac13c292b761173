import { linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Thrown when another live process holds the data directory. */
export class DataDirInUseError extends Error {
  override readonly name = 'DataDirInUseError';
  readonly pid: number;
  constructor(dir: string, pid: number) {
    super(`the data directory ${dir} is in use by process ${pid}; stop it first (the embedded database belongs to one process at a time)`);
    this.pid = pid;
  }
}

/**
 * Takes the data directory for this process: the embedded database must never
 * be opened by two processes at once (that corrupts it). A lock file, created
 * atomically (link(2)), holds the owner's pid; a lock left by a dead process is taken over.
 *
 * Taking over is where two processes could both win: each sees the dead pid,
 * one removes the stale file and creates its own, the other then removes that
 * fresh one. So only the process that creates the takeover marker of that very
 * file (named by its inode, created just as atomically) may remove it, and only after checking that
 * the file is still the stale one; everyone else starts over and meets the
 * winner's live lock.
 * @returns a function that releases the lock
 */
export function lockDataDir(dir: string, options: { beforeTakeover?: () => void } = {}): () => void {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = join(dir, 'tessera.lock');
  for (let attempt = 0; attempt < 50; attempt++) {
    if (createExclusive(file)) {
      let released = false;
      return () => {
        if (released) return;
        released = true;
        rmSync(file, { force: true });
      };
    }
    const holder = readHolder(file);
    if (holder === undefined) continue; // released meanwhile
    if (holder.pid !== process.pid && isAlive(holder.pid)) throw new DataDirInUseError(dir, holder.pid);
    options.beforeTakeover?.(); // tests widen the race window here
    const marker = `${file}.takeover-${holder.ino}`;
    if (!createExclusive(marker)) {
      // Another process is taking it over; one whose taker died is abandoned.
      const taker = readHolder(marker);
      if (taker !== undefined && !isAlive(taker.pid)) rmSync(marker, { force: true });
      pause(5);
      continue;
    }
    try {
      const now = readHolder(file);
      if (now !== undefined && now.ino === holder.ino && now.pid === holder.pid) rmSync(file, { force: true });
    } finally {
      rmSync(marker, { force: true });
    }
  }
  throw new Error(`could not lock the data directory ${dir}`);
}

/**
 * Creates `path` holding this pid, or returns false when it exists. The pid is
 * written first and linked into place (link(2) fails on an existing name), so a
 * lock file is never seen empty, which a reader would take for a dead holder's.
 */
function createExclusive(path: string): boolean {
  const draft = `${path}.${process.pid}.draft`;
  writeFileSync(draft, `${process.pid}\n`, { mode: 0o600 });
  try {
    linkSync(draft, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  } finally {
    rmSync(draft, { force: true });
  }
}

/** The pid in a lock file and the file's identity; `undefined` when it is gone. An unreadable pid counts as dead. */
function readHolder(path: string): { pid: number; ino: number } | undefined {
  try {
    const ino = statSync(path).ino;
    const pid = Number.parseInt(readFileSync(path, 'utf8'), 10);
    return { pid: Number.isInteger(pid) && pid > 0 ? pid : 0, ino };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw error;
  }
}

function pause(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function isAlive(pid: number): boolean {
  if (pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    // EPERM: it exists, it is just not ours to signal.
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}
