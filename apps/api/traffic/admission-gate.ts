/**
 * Admission control for new sagas (payouts, deposits) in one API instance: an adaptive limit on the
 * requests awaiting their saga's first decision, in the manner of TCP's AIMD congestion control.
 *
 * Signals, both measured here: how many decisions are in flight, and how long decisions take (p90 of each
 * window). A slow worker, a Temporal backlog or a dead worker all show in it within one window:
 * - a decision still pending at the window's end and already older than the target counts with its age so
 *   far (a lower bound: the gate need not wait for the slow ones to return);
 * - a decision that misses the sync deadline counts as the deadline;
 * - one slower than twice the target (done or pending) closes the window early, once the target has passed
 *   since the last one (at most one cut per round trip, as in TCP).
 * When the window's p90 is above the target the limit shrinks by 30 % (up to 50 % in proportion, far above
 * it); a full-length window that ran at its limit and stayed under the target grows it by one; each idle
 * window (no decision pending) doubles it back towards its start (nothing says the platform is still in
 * trouble). A request beyond the limit is refused at once (429 OVERLOADED, nothing written), so the
 * requests admitted keep their latency instead of every request queueing behind the excess.
 */
export interface AdmissionOptions {
  /** p90 decision latency the limit is steered under (ADMISSION_LATENCY_TARGET_MS). */
  targetMs: number;
  /** Ceiling of the limit (ADMISSION_MAX_IN_FLIGHT). */
  maxInFlight: number;
  windowMs?: number;
  now?: () => number;
}

export interface AdmissionTicket {
  /** The decision came (or the deadline passed): frees the slot and records its latency. */
  leave(): void;
}

export interface AdmissionState {
  limit: number;
  inFlight: number;
  /** p90 decision latency of the last finished window, in ms (0 before the first). */
  p90Ms: number;
}

const MIN_LIMIT = 2;
const INITIAL_LIMIT = 16;
const DECREASE = 0.7;

export class AdmissionGate {
  private limit: number;
  private readonly initialLimit: number;
  /** When each pending decision entered: the pending ones already older than the target are samples too. */
  private readonly pendingSince = new Set<{ at: number }>();
  private windowStartedAt: number;
  private samples: number[] = [];
  private peakInFlight = 0;
  private shedInWindow = 0;
  private lastP90 = 0;
  private lastSampleAt = 0;
  private readonly windowMs: number;
  private readonly now: () => number;

  constructor(private readonly opts: AdmissionOptions) {
    this.windowMs = opts.windowMs ?? 500;
    this.now = opts.now ?? (() => performance.now());
    this.initialLimit = Math.min(INITIAL_LIMIT, opts.maxInFlight);
    this.limit = this.initialLimit;
    this.windowStartedAt = this.now();
  }

  /** A slot for one new saga's decision, or undefined when the platform cannot decide more in time. */
  tryEnter(): AdmissionTicket | undefined {
    this.advance();
    if (this.inFlight >= this.limit) {
      this.shedInWindow += 1;
      return undefined;
    }
    const entered = { at: this.now() };
    this.pendingSince.add(entered);
    this.peakInFlight = Math.max(this.peakInFlight, this.inFlight);
    let left = false;
    return {
      leave: () => {
        if (left) return;
        left = true;
        this.pendingSince.delete(entered);
        this.lastSampleAt = this.now();
        this.samples.push(this.lastSampleAt - entered.at);
        this.advance();
      },
    };
  }

  state(): AdmissionState {
    this.advance();
    return { limit: this.limit, inFlight: this.inFlight, p90Ms: Math.round(this.lastP90) };
  }

  private get inFlight(): number {
    return this.pendingSince.size;
  }

  /** After trouble, back to the starting limit quickly (doubling per idle window), as TCP's slow start. */
  private recover(): void {
    this.limit = Math.min(this.initialLimit, this.limit * 2);
  }

  /** Closes the window once it is over and adapts the limit to what it measured. */
  private advance(): void {
    const at = this.now();
    const elapsed = at - this.windowStartedAt;
    if (elapsed < Math.min(this.opts.targetMs, this.windowMs)) return;
    // Before the window's end only a decision slower than twice the target closes it (looked for only then).
    const early = elapsed < this.windowMs;
    if (early && !this.slowerThan(2 * this.opts.targetMs, at)) return;
    for (const entered of this.pendingSince) if (at - entered.at > this.opts.targetMs) this.samples.push(at - entered.at);
    if (this.samples.length > 0) {
      this.lastP90 = quantile(this.samples, 0.9);
      // Far above the target, a deeper cut (in proportion, down to half): the queue behind it is longer.
      if (this.lastP90 > this.opts.targetMs) this.limit = Math.max(MIN_LIMIT, Math.floor(this.limit * Math.max(0.5, Math.min(DECREASE, this.opts.targetMs / this.lastP90))));
      else if (!early && (this.peakInFlight >= this.limit || this.shedInWindow > 0)) this.limit = Math.min(this.opts.maxInFlight, this.limit + 1);
    } else if (this.inFlight >= this.limit) {
      // Full for a whole window and not one decision: decisions are stuck (worker or Temporal down).
      this.limit = Math.max(MIN_LIMIT, Math.floor(this.limit * DECREASE));
    }
    // Idle since the last decision: nothing says the platform is still in trouble. Each idle window doubles
    // the limit back (counted here, as this runs lazily: a window's last samples may be long past).
    if (this.inFlight === 0) {
      const quietSince = this.samples.length > 0 ? this.lastSampleAt : this.windowStartedAt;
      for (let idle = Math.floor((at - quietSince) / this.windowMs); idle > 0 && this.limit < this.initialLimit; idle--) this.recover();
    }
    this.windowStartedAt = at;
    this.samples = [];
    this.peakInFlight = this.inFlight;
    this.shedInWindow = 0;
  }

  private slowerThan(ms: number, at: number): boolean {
    if (this.samples.some((sample) => sample > ms)) return true;
    for (const entered of this.pendingSince) if (at - entered.at > ms) return true;
    return false;
  }
}

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}
