import { readFileSync } from 'node:fs';

/** Linux USER_HZ: /proc times are in these ticks. */
export const CLK_TCK = 100;

/** utime + stime ticks from a /proc/…/stat line (fields 14 and 15 of proc(5)). */
function statTicks(path: string): number {
  const stat = readFileSync(path, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** CPU time of a process (all threads) and of its main thread, in ms. Throws when it is gone. */
export function procCpuMs(pid: number): { total: number; main: number } {
  return {
    total: (statTicks(`/proc/${pid}/stat`) * 1000) / CLK_TCK,
    main: (statTicks(`/proc/${pid}/task/${pid}/stat`) * 1000) / CLK_TCK,
  };
}

/** CPU time of a process, all threads, in ticks; 0 when it is gone. */
export function pidJiffies(pid: number): number {
  try {
    return statTicks(`/proc/${pid}/stat`);
  } catch {
    return 0;
  }
}

/** A `VmRSS` / `VmHWM` line of /proc/<pid>/status, in MB. */
export function procStatusMb(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm'));
  return m ? Number(m[1]) / 1024 : Number.NaN;
}

/** This process's CPU time so far, in ms. */
export function selfCpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

/**
 * Busy and total ticks of the whole machine (/proc/stat): busy is user, nice, system,
 * irq, softirq and steal (guest time is already in user); total adds idle and iowait.
 */
export function machineTicks(): { busy: number; total: number } {
  const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
  const busy = fields[0]! + fields[1]! + fields[2]! + fields[5]! + fields[6]! + fields[7]!;
  return { busy, total: busy + fields[3]! + (fields[4] ?? 0) };
}
