import { Gauge } from 'prom-client';
import type { Config } from '../../../lib/config';
import type { Pool } from '../../../lib/db';
import type { Logger } from '../../../lib/logger';
import type { ApiMetrics } from '../metrics/metrics';
import { ProblemError } from '../common/problem';
import { AdmissionGate, type AdmissionTicket } from './admission-gate';
import { PLATFORM_MODES, PlatformModes } from './platform-mode';
import { RateLimits } from './rate-limits';
import type { SagaAdmission } from '../sagas/idempotent-start';

/** Seconds a refused new payout is told to wait while the operator has paused them or made the platform read-only. */
export const MODE_RETRY_AFTER_SECONDS = 30;

/**
 * What decides whether a request may add load, in the order it is asked (each refusal writes nothing):
 * 1. read-only mode, for any change (READ_ONLY, 503; TrafficGuard);
 * 2. the token subject's rate limit, for any authenticated request (RATE_LIMITED, 429; TrafficGuard);
 * 3. the account's rate limit, for payouts and deposits (RATE_LIMITED, 429);
 *    — a repeat of a request already answered gets its answer from here on —
 * 4. no-new-payouts mode, for a new payout (PAYOUTS_PAUSED, 503);
 * 5. admission, measured in this instance, for a new saga (OVERLOADED, 429).
 * Provider webhooks pass only their provider's rate limit; staff actions and reads only 1 and 2.
 * The rate limits are shared by all API instances (PostgreSQL); admission is each instance's own.
 */
export class TrafficControl implements SagaAdmission {
  readonly modes: PlatformModes;
  readonly rateLimits: RateLimits;
  readonly gate: AdmissionGate;

  constructor(
    config: Config,
    pool: Pool,
    logger: Logger,
    private readonly metrics: ApiMetrics,
  ) {
    this.modes = new PlatformModes(pool, logger);
    this.rateLimits = new RateLimits(pool, config, ({ limit, allowed }) => metrics.rateLimited.inc({ limit, outcome: allowed ? 'allowed' : 'limited' }));
    this.gate = new AdmissionGate({ targetMs: config.ADMISSION_LATENCY_TARGET_MS, maxInFlight: config.ADMISSION_MAX_IN_FLIGHT });
    const gate = this.gate;
    const modes = this.modes;
    new Gauge({ name: 'admission_limit', help: 'Adaptive limit of new sagas awaiting their decision in this API instance', registers: [metrics.registry], collect() { this.set(gate.state().limit); } });
    new Gauge({ name: 'admission_in_flight', help: 'New sagas awaiting their decision in this API instance', registers: [metrics.registry], collect() { this.set(gate.state().inFlight); } });
    new Gauge({ name: 'admission_decision_p90_seconds', help: 'p90 decision latency of the admission gate\'s last window', registers: [metrics.registry], collect() { this.set(gate.state().p90Ms / 1000); } });
    new Gauge({
      name: 'platform_mode',
      help: 'The degradation mode in force in this API instance (1 for the current mode)',
      labelNames: ['mode'],
      registers: [metrics.registry],
      collect() {
        for (const mode of PLATFORM_MODES) this.set({ mode }, mode === modes.mode ? 1 : 0);
      },
    });
  }

  /**
   * Before a saga is started for a new request: a ticket to hold until its first decision, or the refusal.
   * `newKey`: the Idempotency-Key was never claimed (a retry of a claimed key may rejoin its saga when
   * payouts are paused: it is not a new payout).
   */
  admitSaga(operation: 'payout' | 'deposit', newKey: boolean): AdmissionTicket {
    const mode = this.modes.mode;
    if (mode === 'read-only') {
      this.metrics.admissions.inc({ operation, outcome: 'read_only' });
      throw new ProblemError('READ_ONLY', 'The operator has made the platform read-only for now; retry later with the same Idempotency-Key', {}, MODE_RETRY_AFTER_SECONDS);
    }
    if (mode === 'no-new-payouts' && operation === 'payout' && newKey) {
      this.metrics.admissions.inc({ operation, outcome: 'paused' });
      throw new ProblemError('PAYOUTS_PAUSED', 'The operator has paused new payouts; nothing was recorded, retry later with the same Idempotency-Key', {}, MODE_RETRY_AFTER_SECONDS);
    }
    const ticket = this.gate.tryEnter();
    if (!ticket) {
      this.metrics.admissions.inc({ operation, outcome: 'overloaded' });
      throw new ProblemError('OVERLOADED', 'The platform is deciding as many requests as it can right now; nothing was recorded, retry shortly with the same Idempotency-Key', {}, 1);
    }
    this.metrics.admissions.inc({ operation, outcome: 'admitted' });
    return ticket;
  }

  limitAccount(accountId: string): Promise<void> {
    return this.rateLimits.consume('account', accountId);
  }

  observeDecision(operation: 'payout' | 'deposit', seconds: number, decided: boolean): void {
    this.metrics.decisionLatency.observe({ operation, decided: String(decided) }, seconds);
  }
}
