import { type ChildProcess, spawn, type SpawnOptions } from 'node:child_process';
import readline from 'node:readline';

export interface ManagedProcess {
  name: string;
  child: ChildProcess;
  /** Resolves with the exit code (or signal) once the process has exited. */
  exited: Promise<number | string>;
  stop(graceMs?: number, signal?: NodeJS.Signals): Promise<void>;
}

/**
 * Spawns a long-running child in its own process group, forwards its output line by line, and
 * can stop it politely (SIGTERM, then SIGKILL after a grace period), children included.
 */
export function startProcess(
  name: string,
  command: string,
  args: string[],
  options: SpawnOptions & { onLine?: (line: string, stream: 'stdout' | 'stderr') => void } = {},
): ManagedProcess {
  const { onLine, ...spawnOptions } = options;
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true, ...spawnOptions });
  for (const stream of ['stdout', 'stderr'] as const) {
    const source = child[stream];
    if (source && onLine) readline.createInterface({ input: source }).on('line', (line) => onLine(line, stream));
    else source?.resume();
  }
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
    child.once('error', (err) => resolve(`spawn error: ${err.message}`));
  });
  let stopping: Promise<void> | undefined;
  const signalGroup = (signal: NodeJS.Signals) => {
    try {
      if (child.pid) process.kill(-child.pid, signal);
    } catch {
      // already gone
    }
  };
  return {
    name,
    child,
    exited,
    stop(graceMs = 10_000, signal: NodeJS.Signals = 'SIGTERM') {
      stopping ??= (async () => {
        if (child.exitCode !== null || child.signalCode !== null) return;
        signalGroup(signal);
        const timer = setTimeout(() => signalGroup('SIGKILL'), graceMs);
        await exited;
        clearTimeout(timer);
      })();
      return stopping;
    },
  };
}

/** A JSON log line without its stack trace (the Temporal server's run to dozens of lines): for the console; files keep it. */
export function withoutStackTrace(line: string): string {
  if (!line.startsWith('{') || !line.includes('"stacktrace"')) return line;
  try {
    const { stacktrace: _, ...rest } = JSON.parse(line) as Record<string, unknown>;
    return JSON.stringify(rest);
  } catch {
    return line;
  }
}

/**
 * Waits for `ready`; if the process exits first, or `ready` fails, stops it and throws, with the last lines it
 * printed when `lastLines` keeps them.
 */
export async function whenReady(proc: ManagedProcess, ready: Promise<unknown>, what: string, opts: { lastLines?: string[]; stopGraceMs?: number } = {}): Promise<void> {
  try {
    await Promise.race([
      ready,
      proc.exited.then((code) => {
        throw new Error(`${what} exited (${code})${opts.lastLines ? `:\n${opts.lastLines.join('\n')}` : ''}`);
      }),
    ]);
  } catch (err) {
    await proc.stop(opts.stopGraceMs ?? 2_000);
    throw err;
  }
}

/** SIGKILL of `pid`'s process group, or of the process alone when it leads none; false when it is already gone. */
export function killGroup(pid: number): boolean {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
      return true;
    } catch {
      // not a group leader, or gone
    }
  }
  return false;
}

/**
 * For a script whose children run in process groups of their own, which a Ctrl-C does not reach: on SIGINT or
 * SIGTERM, `stop` runs and the script exits 130. Answers `stop` made to run once, for the script's own cleanup.
 */
export function stopOnSignal(stop: () => Promise<void>, say: (msg: string) => void): () => Promise<void> {
  let stopping: Promise<void> | undefined;
  const stopOnce = () => (stopping ??= stop());
  const onSignal = (signal: NodeJS.Signals) => {
    say(`${signal}: stopping every process this run started`);
    void stopOnce()
      .catch(() => undefined)
      .finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return stopOnce;
}
