/**
 * Reconciliation runs as recorded (tables reconciliation_runs and reconciliation_mismatches): read by the
 * reconciliation activity (the run it just wrote), the API's staff route and the metrics.
 */
import type { Pool } from './db';
import { emptyMismatchCounts, type ItemKind, type MismatchKind, type ProviderItem } from '../contracts/reconciliation';
import type { InvariantViolation } from '../ledger';

type Queryable = Pick<Pool, 'query'>;

interface RunRow {
  run_id: string;
  workflow_id: string;
  window_since: Date;
  window_until: Date;
  action_time: Date;
  grace_seconds: number;
  scope: string[] | null;
  started_at: Date;
  finished_at: Date;
  status: 'clean' | 'mismatches';
  invariant_violations: InvariantViolation[];
  provider_items: number;
  ledger_movements: number;
  looked_up: number;
  carried_over: number;
  mismatches: number;
  by_provider: Record<string, { providerItems: number; lookedUp: number; mismatches: number }>;
}

export interface ReconciliationMismatch {
  kind: MismatchKind;
  item_kind: ItemKind | null;
  reference: string;
  provider: string | null;
  provider_item: ProviderItem | null;
  ledger_facts: unknown;
  detail: string;
  recorded_at: string;
}

/** A finished run as staff read it. */
export interface ReconciliationRun {
  run_id: string;
  workflow_id: string;
  status: 'clean' | 'mismatches';
  window: { since: string; until: string };
  action_time: string;
  grace_seconds: number;
  /** null for a full run; the references a scoped run was limited to. */
  scope: string[] | null;
  started_at: string;
  finished_at: string;
  counts: { provider_items: number; ledger_movements: number; looked_up: number; carried_over: number; mismatches: number };
  by_kind: Record<MismatchKind, number>;
  by_provider: Record<string, { provider_items: number; looked_up: number; mismatches: number }>;
  invariant_violations: InvariantViolation[];
  mismatches: ReconciliationMismatch[];
}

export async function readRun(db: Queryable, runId: string): Promise<ReconciliationRun> {
  const { rows } = await db.query<RunRow>('SELECT * FROM reconciliation_runs WHERE run_id = $1', [runId]);
  const row = rows[0];
  if (!row) throw new Error(`reconciliation run ${runId} not found`);
  const { rows: found } = await db.query<Omit<ReconciliationMismatch, 'recorded_at'> & { recorded_at: Date }>(
    'SELECT kind, item_kind, reference, provider, provider_item, ledger_facts, detail, recorded_at FROM reconciliation_mismatches WHERE run_id = $1 ORDER BY id',
    [runId],
  );
  const byKind = emptyMismatchCounts();
  for (const m of found) byKind[m.kind] += 1;
  return {
    run_id: row.run_id,
    workflow_id: row.workflow_id,
    status: row.status,
    window: { since: row.window_since.toISOString(), until: row.window_until.toISOString() },
    action_time: row.action_time.toISOString(),
    grace_seconds: row.grace_seconds,
    scope: row.scope,
    started_at: row.started_at.toISOString(),
    finished_at: row.finished_at.toISOString(),
    counts: { provider_items: row.provider_items, ledger_movements: row.ledger_movements, looked_up: row.looked_up, carried_over: row.carried_over, mismatches: row.mismatches },
    by_kind: byKind,
    by_provider: Object.fromEntries(Object.entries(row.by_provider ?? {}).map(([name, c]) => [name, { provider_items: c.providerItems, looked_up: c.lookedUp, mismatches: c.mismatches }])),
    invariant_violations: row.invariant_violations,
    mismatches: found.map((m) => ({ ...m, recorded_at: m.recorded_at.toISOString() })),
  };
}

/** The latest finished run (full or scoped) with its mismatches; undefined before the first. */
export async function latestReconciliation(db: Queryable): Promise<ReconciliationRun | undefined> {
  const { rows } = await db.query<{ run_id: string }>('SELECT run_id FROM reconciliation_runs ORDER BY finished_at DESC, run_id DESC LIMIT 1');
  return rows[0] ? readRun(db, rows[0].run_id) : undefined;
}

export interface ReconciliationSummary {
  last_run_at: string | null;
  last_run_mismatches: number;
  /** Mismatches still open: those the latest full run found (each full run restates every open one). */
  open_by_kind: Record<MismatchKind, number>;
}

/** For /metrics: the latest full (scheduled) run; scoped diagnostic runs do not move these figures. */
export async function reconciliationSummary(db: Queryable): Promise<ReconciliationSummary> {
  const { rows } = await db.query<{ run_id: string; finished_at: Date; mismatches: number }>(
    'SELECT run_id, finished_at, mismatches FROM reconciliation_runs WHERE scope IS NULL ORDER BY finished_at DESC, run_id DESC LIMIT 1',
  );
  const openByKind = emptyMismatchCounts();
  const last = rows[0];
  if (!last) return { last_run_at: null, last_run_mismatches: 0, open_by_kind: openByKind };
  const { rows: counted } = await db.query<{ kind: MismatchKind; n: number }>('SELECT kind, count(*)::int AS n FROM reconciliation_mismatches WHERE run_id = $1 GROUP BY kind', [last.run_id]);
  for (const c of counted) openByKind[c.kind] = c.n;
  return { last_run_at: last.finished_at.toISOString(), last_run_mismatches: last.mismatches, open_by_kind: openByKind };
}
