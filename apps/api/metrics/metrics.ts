import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ping, type Pool } from '../../../lib/db';
import { probe } from '../../../lib/health-server';
import { WorkflowTaskFailureStore } from '../../../lib/workflow-task-failures';
import { DEPOSIT_SAGA_TYPES } from '../../../contracts/deposit';
import { PAYOUT_SAGA_TYPES } from '../../../contracts/payout';

/** How long a dependency probe may take at scrape time before the dependency counts as down. */
const DEPENDENCY_PROBE_TIMEOUT_MS = 2_000;

/** The API's Prometheus registry and the instruments features record into. */
export class ApiMetrics {
  readonly registry = new Registry();
  readonly httpDuration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'HTTP request latency by route template, method and status',
    labelNames: ['method', 'route', 'status'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
    registers: [this.registry],
  });
  readonly problems = new Counter({
    name: 'http_problems_total',
    help: 'Problem responses by stable code',
    labelNames: ['code'] as const,
    registers: [this.registry],
  });
  readonly idempotentReplays = new Counter({
    name: 'idempotent_replays_total',
    help: 'Answers replayed from an earlier request with the same Idempotency-Key',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });
  readonly idempotencyMismatches = new Counter({
    name: 'idempotency_mismatches_total',
    help: 'Requests refused because their Idempotency-Key was first used with another request',
    labelNames: ['route'] as const,
    registers: [this.registry],
  });
  readonly webhookSignatureFailures = new Counter({
    name: 'webhook_signature_failures_total',
    help: 'Provider webhooks refused for a missing, stale or wrong signature',
    labelNames: ['provider'] as const,
    registers: [this.registry],
  });
  readonly webhookDuplicates = new Counter({
    name: 'webhook_duplicates_total',
    help: 'Provider webhooks acknowledged without a signal because they were delivered before',
    labelNames: ['provider'] as const,
    registers: [this.registry],
  });
  readonly webhookEventConflicts = new Counter({
    name: 'webhook_event_conflicts_total',
    help: 'Provider webhooks refused because their event id was received before with a different body',
    labelNames: ['provider'] as const,
    registers: [this.registry],
  });
  readonly sagaUnavailable = new Counter({
    name: 'saga_unavailable_total',
    help: 'Reads and actions on a saga that could not be served because its workflow task is failing (a defect: alert)',
    labelNames: ['operation'] as const,
    registers: [this.registry],
  });

  readonly admissions = new Counter({
    name: 'admission_requests_total',
    help: 'New payouts and deposits by admission outcome: admitted, overloaded (429, shed), paused or read_only (503, degradation mode)',
    labelNames: ['operation', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly rateLimited = new Counter({
    name: 'rate_limit_requests_total',
    help: 'Requests counted by a rate limit (account, subject, webhook), allowed or limited (429)',
    labelNames: ['limit', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly decisionLatency = new Histogram({
    name: 'saga_decision_seconds',
    help: 'Time from admission to the saga\'s first decision (or the sync deadline, decided="false"), by operation',
    labelNames: ['operation', 'decided'] as const,
    buckets: [0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1, 2, 3, 5],
    registers: [this.registry],
  });

  /** Gauges computed from PostgreSQL at scrape time; each source adds its own. */
  private readonly scrapeSources: ((set: (name: string, labels: Record<string, string>, value: number) => void) => Promise<void>)[] = [];
  private readonly gauges = new Map<string, Gauge<string>>();

  constructor(pool?: Pool) {
    this.registry.setDefaultLabels({ service: 'api' });
    collectDefaultMetrics({ register: this.registry });
    if (pool) {
      // Always present (1 or 0), so an alert sees PostgreSQL down even when every gauge read from it is empty.
      this.addDependency('postgres', () => ping(pool));
      this.addGauge('payouts_by_status', 'Payout sagas by current status (read model)', ['status']);
      this.addGauge('payouts_stuck', 'Payout sagas waiting on their provider past the stuck threshold', []);
      this.addGauge('deposits_by_status', 'Deposit sagas by current status (read model)', ['status']);
      this.addGauge('provider_incidents', 'Provider claims and records the sagas refused to act on, by kind (see GET /v1/ops/incidents)', ['kind']);
      this.addGauge('sagas_workflow_task_failing', 'Sagas marked because their workflow task keeps failing (a defect: nobody is paid until it is fixed), by workflow type', ['workflow_type']);
      this.scrapeSources.push(async (set) => {
        const payouts = await pool.query<{ status: string; n: number; stuck: number }>('SELECT status, count(*)::int AS n, count(*) FILTER (WHERE stuck)::int AS stuck FROM payouts GROUP BY status');
        let stuck = 0;
        for (const row of payouts.rows) {
          set('payouts_by_status', { status: row.status }, row.n);
          stuck += row.stuck;
        }
        set('payouts_stuck', {}, stuck);
        const deposits = await pool.query<{ status: string; n: number }>('SELECT status, count(*)::int AS n FROM deposits GROUP BY status');
        for (const row of deposits.rows) set('deposits_by_status', { status: row.status }, row.n);
        const incidents = await pool.query<{ kind: string; n: number }>('SELECT kind, count(*)::int AS n FROM provider_incidents GROUP BY kind');
        for (const row of incidents.rows) set('provider_incidents', { kind: row.kind }, row.n);
      });
      const taskFailures = new WorkflowTaskFailureStore(pool);
      this.scrapeSources.push(async (set) => {
        // Every saga type always present (0 when healthy), so an alert rule sees the series.
        const counts = new Map<string, number>([...PAYOUT_SAGA_TYPES, ...DEPOSIT_SAGA_TYPES].map((type) => [type, 0]));
        for (const { workflowType, count } of await taskFailures.countByType()) counts.set(workflowType, count);
        for (const [workflowType, count] of counts) set('sagas_workflow_task_failing', { workflow_type: workflowType }, count);
      });
    }
  }

  /** A gauge whose values a scrape source sets; registered once. */
  addGauge(name: string, help: string, labelNames: string[]): void {
    if (this.gauges.has(name)) return;
    this.gauges.set(name, new Gauge({ name, help, labelNames, registers: [this.registry] }));
  }

  /**
   * A dependency probed at every scrape: `dependency_up{dependency}` is 1 when `check` settles within 2 s, 0
   * otherwise (what GET /health reports, for alert rules). PostgreSQL is registered by the constructor.
   */
  addDependency(name: string, check: () => Promise<unknown>): void {
    this.addGauge('dependency_up', 'Whether a dependency answered this scrape\'s probe within 2 s (1) or not (0), by dependency', ['dependency']);
    this.scrapeSources.push(async (set) => set('dependency_up', { dependency: name }, (await probe(DEPENDENCY_PROBE_TIMEOUT_MS, check)).status === 'up' ? 1 : 0));
  }

  /** Adds a source of scrape-time gauge values (e.g. outbox lag, reconciliation mismatches). */
  addScrapeSource(source: (set: (name: string, labels: Record<string, string>, value: number) => void) => Promise<void>): void {
    this.scrapeSources.push(source);
  }

  async render(): Promise<string> {
    for (const gauge of this.gauges.values()) gauge.reset();
    const set = (name: string, labels: Record<string, string>, value: number) => this.gauges.get(name)?.set(labels, value);
    // A failing source (database down) leaves its gauges empty rather than failing the whole scrape.
    await Promise.all(this.scrapeSources.map((source) => source(set).catch(() => undefined)));
    return this.registry.metrics();
  }
}
