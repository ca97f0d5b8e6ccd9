/**
 * Graceful stop on SIGINT/SIGTERM, and, when started by the launcher (LAUNCHER_PID), stop as well if the
 * launcher disappears without stopping us (killed with SIGKILL), so no orphan keeps a port.
 */
export function onShutdown(stop: (reason: string) => Promise<void> | void): void {
  let stopping = false;
  const run = async (reason: string) => {
    if (stopping) return;
    stopping = true;
    try {
      await stop(reason);
    } finally {
      process.exit(0);
    }
  };
  process.once('SIGINT', () => void run('SIGINT'));
  process.once('SIGTERM', () => void run('SIGTERM'));
  const launcherPid = Number(process.env.LAUNCHER_PID);
  if (launcherPid) {
    const timer = setInterval(() => {
      if (process.ppid !== launcherPid) void run('launcher gone');
    }, 1_000);
    timer.unref();
  }
}
