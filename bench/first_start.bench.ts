/**
 * First start against restart of `tessera serve` on the embedded database: the time
 * from spawning the process until it answers `GET /healthz`, and its RSS a second
 * later. The baseline is a restart on the same data dir, in the same run. Also times
 * PGlite's initdb alone (what a first start cost before the data-dir template) and an
 * in-memory database (`memory://`, every test server) from the template and from initdb.
 *
 *   npm run build
 *   node --conditions=tessera-source --import tsx bench/first_start.bench.ts [--runs N]
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { PGlite } from '@electric-sql/pglite';
import { pgliteTemplate, POSTGRESQL_CONF } from '../packages/server/src/store/pglite_template.js';
import { procStatusMb } from './lib/proc_cpu.js';
import { spawnServe, stopServe } from './lib/serve_child.js';

const { values } = parseArgs({ options: { runs: { type: 'string', default: '3' } } });
const runs = Number(values.runs);

/** Spawns `tessera serve`, waits for /healthz, reads RSS a second later, stops it. */
async function start(dataDir: string): Promise<{ ms: number; rssMb: number }> {
  const t0 = performance.now();
  const server = await spawnServe(['--data-dir', dataDir, '--log-level', 'info', '--web-root', 'none']);
  while (!(await fetch(new URL('/healthz', server.url)).then((r) => r.ok, () => false))) await new Promise((r) => setTimeout(r, 10));
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 1000));
  const rssMb = procStatusMb(server.pid, 'VmRSS');
  await stopServe(server);
  return { ms, rssMb };
}

async function timed(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return performance.now() - t0;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
const rows: string[] = [];
for (let run = 0; run < runs; run++) {
  const dir = await mkdtemp(join(os.tmpdir(), 'tessera-first-start-'));
  try {
    const first = await start(join(dir, 'data'));
    const restarts = [await start(join(dir, 'data')), await start(join(dir, 'data'))];
    const restart = { ms: median(restarts.map((r) => r.ms)), rssMb: median(restarts.map((r) => r.rssMb)) };
    const initdb = await timed(async () => (await PGlite.create(join(dir, 'initdb'), { postgresqlconf: POSTGRESQL_CONF })).close());
    const template = await pgliteTemplate();
    const memoryTemplate = await timed(async () => (await PGlite.create('memory://', { postgresqlconf: POSTGRESQL_CONF, loadDataDir: template })).close());
    const memoryInitdb = await timed(async () => (await PGlite.create('memory://', { postgresqlconf: POSTGRESQL_CONF })).close());
    rows.push(
      `| ${run + 1} | ${first.ms.toFixed(0)} | ${restart.ms.toFixed(0)} | **${(first.ms / restart.ms).toFixed(2)}×** | ${first.rssMb.toFixed(0)} / ${restart.rssMb.toFixed(0)} | ${initdb.toFixed(0)} | ${memoryTemplate.toFixed(0)} / ${memoryInitdb.toFixed(0)} |`,
    );
    process.stderr.write(`run ${run + 1} done\n`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
console.log(`load average ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}, ${os.cpus().length} cores, template ${(await pgliteTemplate()) ? 'present' : 'MISSING'}\n`);
console.log('| run | first start ms | restart ms (median of 2) | first ÷ restart | idle RSS MB first / restart | PGlite initdb alone ms | memory:// template / initdb ms |');
console.log('|---|---:|---:|---:|---:|---:|---:|');
for (const row of rows) console.log(row);
