import type { Logger } from '../../lib/logger';

/**
 * Every timer of the sandbox goes through here, so app.close() leaves nothing behind, and a resource's
 * pending plan can be cancelled when a test re-scripts or resolves it.
 */
export class Scheduler {
  private readonly timers = new Map<NodeJS.Timeout, string | undefined>();
  private readonly sleepers = new Set<() => void>();
  private closed = false;

  constructor(private readonly logger: Logger) {}

  get isClosed(): boolean {
    return this.closed;
  }

  /** Runs task after ms; `owner` groups timers for cancel(owner). Does nothing once closed. */
  after(ms: number, task: () => void | Promise<void>, owner?: string): void {
    if (this.closed) return;
    const timer = setTimeout(() => {
      this.timers.delete(timer);
      Promise.resolve()
        .then(task)
        .catch((err: unknown) => this.logger.error({ err, owner }, 'sandbox scheduled task failed'));
    }, ms);
    this.timers.set(timer, owner);
  }

  cancel(owner: string): void {
    for (const [timer, timerOwner] of this.timers) {
      if (timerOwner === owner) {
        clearTimeout(timer);
        this.timers.delete(timer);
      }
    }
  }

  /** A delay that ends early when the scheduler closes, so a held-back response never blocks shutdown. */
  sleep(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.sleepers.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.sleepers.add(wake);
    });
  }

  close(): void {
    this.closed = true;
    for (const timer of this.timers.keys()) clearTimeout(timer);
    this.timers.clear();
    for (const wake of [...this.sleepers]) wake();
  }
}
