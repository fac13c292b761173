/**
 * Idle RSS of `tessera serve` (packages/cli/dist), embedded and on PostgreSQL: VmRSS
 * sampled every second from "listening" until `--settle` seconds later, with no request
 * in between. Reported: at 3 s (what token_pair.bench.ts reports) and settled (the last
 * sample): V8 gives back the young generation that startup grew (32 MB → 1 MB) only
 * once its memory reducer sees the process idle, 20-30 s after the start.
 *
 *   npm run build
 *   node --conditions=tessera-source --import tsx bench/idle_memory.bench.ts [--runs 3] [--settle 40]
 *
 * PostgreSQL mode needs Debian's postgresql package (started here, as the tests do).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createDatabase, postgresBinDir, startPostgres } from '../test/support/postgres_server.js';
import { median } from './lib/percentiles.js';
import { procStatusMb } from './lib/proc_cpu.js';
import { spawnServe, stopServe } from './lib/serve_child.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' }, settle: { type: 'string', default: '40' } } });
const runs = Number(values.runs);
const settleS = Number(values.settle);

interface Sample {
  at3s: number;
  settled: number;
  settledAfterS: number;
}

async function idle(args: string[]): Promise<Sample> {
  const server = await spawnServe(['--log-level', 'silent', ...args]);
  const samples: number[] = [];
  for (let s = 1; s <= settleS; s++) {
    await new Promise((r) => setTimeout(r, 1000));
    samples.push(procStatusMb(server.pid, 'VmRSS'));
  }
  await stopServe(server);
  const settled = samples.at(-1)!;
  // The first second from which RSS stays within 2 MB of its final value.
  let from = samples.length;
  while (from > 0 && Math.abs(samples[from - 1]! - settled) <= 2) from--;
  return { at3s: samples[2]!, settled, settledAfterS: from + 1 };
}

const rows: string[] = [];
const line = (what: string, list: Sample[]) => {
  const f = (pick: (s: Sample) => number) => list.map((s) => pick(s).toFixed(0)).join(', ');
  rows.push(
    `| ${what} | ${f((s) => s.at3s)} | ${f((s) => s.settled)} (median ${median(list.map((s) => s.settled)).toFixed(0)}) | ${f((s) => s.settledAfterS)} |`,
  );
  console.error(`[bench] ${what}: 3 s ${f((s) => s.at3s)} MB; settled ${f((s) => s.settled)} MB`);
};

const dir = await mkdtemp(join(os.tmpdir(), 'tessera-idle-'));
try {
  const first: Sample[] = [];
  const restart: Sample[] = [];
  for (let i = 0; i < runs; i++) {
    const dataDir = join(dir, `db-${i}`);
    first.push(await idle(['--data-dir', dataDir]));
    restart.push(await idle(['--data-dir', dataDir]));
  }
  line('embedded PGlite, first start (fresh data dir)', first);
  line('embedded PGlite, restart', restart);
  if (postgresBinDir()) {
    const postgres = await startPostgres();
    try {
      const pg: Sample[] = [];
      for (let i = 0; i < runs; i++) pg.push(await idle(['--database-url', await createDatabase(postgres.url, `idle_${i}`)]));
      line('PostgreSQL (`--database-url`)', pg);
    } finally {
      await postgres.stop();
    }
  } else {
    rows.push('| PostgreSQL | (no postgresql package here) | | |');
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}

console.log(`Date: ${new Date().toISOString()}; Node ${process.version}; ${runs} runs, RSS sampled each second for ${settleS} s after "listening"\n`);
console.log('| Server | RSS MB at 3 s | RSS MB settled | settled after s |\n|---|---:|---:|---:|');
console.log(rows.join('\n'));
