import { readdirSync, readFileSync } from "node:fs";

/**
 * The workerd processes Miniflare started under `parent` (by default this process), read from
 * /proc: their resident memory and the CPU time they have used. The load generator (load.ts) runs
 * as a child of the bench, so it passes the bench's pid to read the same processes.
 */
function workerdPids(parent: number): number[] {
  const pids: number[] = [];
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() !== "workerd") continue;
      // Fields after the parenthesised command: state(3) ppid(4) ...
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      if (Number(fields[1]) === parent) pids.push(Number(pid));
    } catch {
      // the process went away
    }
  }
  return pids;
}

/** workerd's resident memory, in MiB. */
export function workerdRssMib(parent = process.pid): number {
  let total = 0;
  for (const pid of workerdPids(parent)) {
    try {
      total += Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024;
    } catch {
      // the process went away
    }
  }
  return total;
}

/** CPU seconds (user + system, every thread) used so far by workerd. */
export function workerdCpuSeconds(parent = process.pid): number {
  let ticks = 0;
  for (const pid of workerdPids(parent)) {
    try {
      // utime(14) and stime(15), counted from the field after the parenthesised command (state, 3).
      const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
      ticks += Number(fields[11]) + Number(fields[12]);
    } catch {
      // the process went away
    }
  }
  // USER_HZ is 100 on Linux.
  return ticks / 100;
}
