import { CLK_TCK, machineTicks, selfCpuMs } from './proc_cpu.js';

/** Busy CPU of the whole machine and of "us" (this process plus what `ours` adds), in ms, at a time. */
export interface CpuSnapshot {
  machine: number;
  ours: number;
  at: number;
}

/** `ours`: CPU ms of processes that are part of the measurement (a server child), beside this one. */
export function cpuSnapshot(ours: () => number = () => 0): CpuSnapshot {
  return { machine: (machineTicks().busy * 1000) / CLK_TCK, ours: selfCpuMs() + ours(), at: performance.now() };
}

/** Cores' worth of CPU that other processes used between two snapshots. */
export function foreignCores(a: CpuSnapshot, b: CpuSnapshot): number {
  return Math.max(0, b.machine - a.machine - (b.ours - a.ours)) / (b.at - a.at);
}

/**
 * Waits until other processes use less than `threshold` cores over one second, within
 * `budget.ms` for the whole run (what it waits is taken from the budget). Returns the
 * last reading, in cores.
 */
export async function waitForQuiet(options: {
  budget: { ms: number };
  threshold: number;
  ours?: () => number;
  log?: (message: string) => void;
}): Promise<number> {
  const started = performance.now();
  let busy = 0;
  for (;;) {
    const a = cpuSnapshot(options.ours);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    busy = foreignCores(a, cpuSnapshot(options.ours));
    if (busy < options.threshold) break;
    const left = options.budget.ms - (performance.now() - started);
    if (left <= 0) {
      options.log?.(`still ${busy.toFixed(2)} cores busy and the quiet-wait budget is spent; measuring anyway`);
      break;
    }
    options.log?.(`other processes use ${busy.toFixed(2)} cores; waiting for a quiet machine (${(left / 1000).toFixed(0)} s of waiting left)`);
  }
  options.budget.ms = Math.max(0, options.budget.ms - (performance.now() - started));
  return busy;
}
