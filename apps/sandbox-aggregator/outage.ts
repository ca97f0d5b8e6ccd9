import type { Scheduler } from './scheduler';

/**
 * The outage simulation switch (POST /sandbox/outage). While it is on, the provider API (/v1/*) fails:
 * `error` answers 503 at once, `timeout` holds each request (then 503); GET /health answers 503 and webhook
 * deliveries are held back until it ends. It ends with `off` or once its duration_ms has passed.
 *
 * Kept in the process's memory on purpose: it is a switch for tests and demos, not provider state. A restarted
 * sandbox starts with no outage (and sends the webhooks it held back, as resume() does for any due delivery).
 */
export type OutageMode = 'error' | 'timeout';

export interface OutageView {
  mode: OutageMode | 'off';
  /** When the current outage began (ISO 8601); absent when off. */
  started_at?: string;
  /** When it ends by itself; absent when off or when it lasts until `off`. */
  ends_at?: string;
}

const OWNER = 'outage';

export class OutageSwitch {
  private state: { mode: OutageMode; startedAt: number; endsAt: number | undefined } | undefined;
  private readonly endListeners: (() => void)[] = [];

  constructor(private readonly scheduler: Scheduler) {}

  /** Called (synchronously) each time an outage ends, by `off` or by its duration running out. */
  onEnd(listener: () => void): void {
    this.endListeners.push(listener);
  }

  /** The current outage's mode, or undefined when there is none (an outage past its end is ended here). */
  get active(): OutageMode | undefined {
    if (this.state?.endsAt !== undefined && Date.now() >= this.state.endsAt) this.end();
    return this.state?.mode;
  }

  /** Turns an outage on (replacing the current one, its duration counted afresh) or off. */
  set(mode: OutageMode | 'off', durationMs?: number): OutageView {
    this.scheduler.cancel(OWNER);
    if (mode === 'off') {
      this.end();
      return this.view();
    }
    const at = Date.now();
    // Switching from one mode to the other continues the same outage; its end is counted from now.
    const startedAt = this.state?.startedAt ?? at;
    const endsAt = durationMs === undefined ? undefined : at + durationMs;
    const state = { mode, startedAt, endsAt };
    this.state = state;
    // A timer, not only the check on each request: held-back webhooks go out when it ends, requests or not.
    if (durationMs !== undefined) this.scheduler.after(durationMs, () => (this.state === state ? this.end() : undefined), OWNER);
    return this.view();
  }

  view(): OutageView {
    const mode = this.active;
    if (!mode || !this.state) return { mode: 'off' };
    return {
      mode,
      started_at: new Date(this.state.startedAt).toISOString(),
      ...(this.state.endsAt !== undefined ? { ends_at: new Date(this.state.endsAt).toISOString() } : {}),
    };
  }

  private end(): void {
    if (!this.state) return;
    this.state = undefined;
    this.scheduler.cancel(OWNER);
    for (const listener of this.endListeners) listener();
  }
}
