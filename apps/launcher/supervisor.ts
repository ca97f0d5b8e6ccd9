import fs from 'node:fs';
import path from 'node:path';
import { sleep } from '../../lib/wait';

/** The file in DATA_DIR where the launcher's supervisor keeps each process's pid. */
export function processFile(dataDir: string): string {
  return path.join(dataDir, 'processes.json');
}

/** name → pid of each process the launcher in `dataDir` supervises (null while one is being started again). */
export function launchedProcesses(dataDir: string): Record<string, number | null> {
  return JSON.parse(fs.readFileSync(processFile(dataDir), 'utf8')) as Record<string, number | null>;
}

/** What the supervisor runs: a started process (or group) with its exit and a polite stop. */
export interface Running {
  pid: number | undefined;
  exited: Promise<number | string>;
  stop(): Promise<void>;
}

/** Restart delays: 1 s doubling to 30 s; a process that ran a minute before it died starts again at 1 s. */
const FIRST_DELAY_MS = 1_000;
const MAX_DELAY_MS = 30_000;
const HEALTHY_AFTER_MS = 60_000;

interface Entry {
  name: string;
  start: () => Promise<Running>;
  current?: Running;
  restarts: number;
}

/**
 * Keeps the platform's processes running: each is started in order, and one that exits on its own (a crash, a
 * SIGKILL) is started again with backoff and logged, while the rest go on. `stopAll` stops them in reverse
 * order and nothing restarts after it. The pid of each is kept in a JSON file (name → pid) for operators and
 * the fault tests.
 */
export class Supervisor {
  private readonly entries: Entry[] = [];
  private stopping = false;

  constructor(private readonly opts: { say: (msg: string) => void; pidFile: string; logOf: (name: string) => string }) {}

  /** Starts it now (a failure of this first start is the caller's), then watches it. */
  async supervise(name: string, start: () => Promise<Running>): Promise<Running> {
    const entry: Entry = { name, start, restarts: 0 };
    this.entries.push(entry);
    entry.current = await start();
    this.writePids();
    void this.watch(entry);
    return entry.current;
  }

  private async watch(entry: Entry): Promise<void> {
    let delay = FIRST_DELAY_MS;
    for (;;) {
      const running = entry.current!;
      const since = Date.now();
      const code = await running.exited;
      if (this.stopping) return;
      if (Date.now() - since >= HEALTHY_AFTER_MS) delay = FIRST_DELAY_MS;
      for (;;) {
        entry.restarts += 1;
        this.opts.say(`${entry.name} exited unexpectedly (${code}) after ${Math.round((Date.now() - since) / 1000)}s; restarting in ${delay / 1000}s (restart ${entry.restarts}; log: ${this.opts.logOf(entry.name)})`);
        await sleep(delay);
        delay = Math.min(MAX_DELAY_MS, delay * 2);
        if (this.stopping) return;
        try {
          entry.current = await entry.start();
          this.writePids();
          this.opts.say(`${entry.name} restarted (pid ${entry.current.pid ?? '?'})`);
          break;
        } catch (err) {
          this.opts.say(`${entry.name} did not start: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`);
        }
      }
    }
  }

  /** Stops everything in reverse order of start, telling `onStopped` of each (with the error when it did not stop cleanly). */
  async stopAll(onStopped: (name: string, error?: unknown) => void): Promise<void> {
    this.stopping = true;
    for (const entry of [...this.entries].reverse()) {
      try {
        await entry.current?.stop();
        onStopped(entry.name);
      } catch (err) {
        onStopped(entry.name, err);
      }
    }
    fs.rmSync(this.opts.pidFile, { force: true });
  }

  private writePids(): void {
    const pids = Object.fromEntries(this.entries.map((e) => [e.name, e.current?.pid ?? null]));
    const staging = `${this.opts.pidFile}.tmp`;
    fs.writeFileSync(staging, `${JSON.stringify(pids, null, 2)}\n`);
    fs.renameSync(staging, this.opts.pidFile);
  }
}
