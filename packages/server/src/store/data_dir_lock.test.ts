import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DataDirInUseError, lockDataDir } from './data_dir_lock.js';

const lockModule = new URL('./data_dir_lock.ts', import.meta.url).href;

/** A pid that belongs to no process: a child that has exited. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', '0']);
  await new Promise((resolve) => child.once('exit', resolve));
  return child.pid as number;
}

/**
 * `racers` processes, released at the same instant, each trying to take `dir`; how
 * many got it. Winners hold the lock until every racer has answered (a winner that
 * exited early would leave a stale lock a latecomer may rightly take over).
 */
async function race(dir: string, racers: number, slowTakeoverMs = 0): Promise<number> {
  const script = `const { lockDataDir } = await import(${JSON.stringify(lockModule)});
const start = Number(process.argv[1]);
const slow = Number(process.argv[2]);
const beforeTakeover = slow ? () => { const until = Date.now() + slow; while (Date.now() < until) {} } : undefined;
while (Date.now() < start) {}
try { lockDataDir(${JSON.stringify(dir)}, { beforeTakeover }); console.log('won'); } catch (e) { console.log(e.name); }
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));`;
  const start = Date.now() + 1500;
  // The first racer dawdles between seeing the dead holder and taking over: the others finish first.
  const children = Array.from({ length: racers }, (_, i) =>
    spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script, String(start), String(i === 0 ? slowTakeoverMs : 0)]),
  );
  const outputs = await Promise.all(
    children.map((child) => {
      let out = '';
      return new Promise<string>((resolve) => {
        child.stdout.on('data', (d) => {
          out += d;
          if (out.includes('\n')) resolve(out);
        });
        child.once('exit', () => resolve(out));
      });
    }),
  );
  await Promise.all(
    children.map((child) => {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.stdin.end();
      return exited;
    }),
  );
  for (const out of outputs) assert.match(out, /won|DataDirInUseError/, out);
  return outputs.filter((out) => out.includes('won')).length;
}

test('a data directory is held by one process; a live holder is refused, a dead one is taken over', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-lock-'));
  try {
    const release = lockDataDir(dir);
    assert.equal(readFileSync(join(dir, 'tessera.lock'), 'utf8').trim(), String(process.pid));
    release();
    assert.equal(existsSync(join(dir, 'tessera.lock')), false);
    writeFileSync(join(dir, 'tessera.lock'), `${process.ppid}\n`);
    assert.throws(() => lockDataDir(dir), DataDirInUseError);
    writeFileSync(join(dir, 'tessera.lock'), `${await deadPid()}\n`);
    lockDataDir(dir)();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('processes racing to take over a stale lock: exactly one wins, every time', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tessera-lock-race-'));
  try {
    for (const [round, slow] of [300, 0, 300].entries()) {
      writeFileSync(join(dir, 'tessera.lock'), `${await deadPid()}\n`);
      assert.equal(await race(dir, 4, slow), 1, `round ${round}${slow ? ', one racer slow to take over' : ''}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
