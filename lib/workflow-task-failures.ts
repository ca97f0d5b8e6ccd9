import type { Pool } from './db';

export type WorkflowTaskFailureKind = 'nondeterminism' | 'workflow_error';

/** A saga marked for staff because its workflow task keeps failing (table workflow_task_failures). */
export interface WorkflowTaskFailureMark {
  workflowId: string;
  workflowType: string;
  runId: string;
  kind: WorkflowTaskFailureKind;
  /** Internal failure text (stack, TMPRL code): staff only. */
  failure: string;
  failingSince: string;
  lastFailedAt: string;
  checkedAt: string | null;
  attempt: number | null;
}

interface MarkRow {
  workflow_id: string;
  workflow_type: string;
  run_id: string;
  kind: WorkflowTaskFailureKind;
  failure: string;
  failing_since: Date;
  last_failed_at: Date;
  checked_at: Date | null;
  attempt: number | null;
}

/** Failure text kept: enough for the message and the top of the stack, bounded. */
const MAX_FAILURE_CHARS = 4_000;

function toMark(row: MarkRow): WorkflowTaskFailureMark {
  return {
    workflowId: row.workflow_id,
    workflowType: row.workflow_type,
    runId: row.run_id,
    kind: row.kind,
    failure: row.failure,
    failingSince: row.failing_since.toISOString(),
    lastFailedAt: row.last_failed_at.toISOString(),
    checkedAt: row.checked_at?.toISOString() ?? null,
    attempt: row.attempt,
  };
}

/**
 * The marks on sagas whose workflow task keeps failing: written by the worker (plain SQL, never by the
 * failing workflow code, which cannot run), read by the API's staff views and its gauge.
 */
export class WorkflowTaskFailureStore {
  constructor(private readonly pool: Pool) {}

  /** Marks (or re-marks) a saga; `failing_since` keeps the start of the episode. */
  async mark(input: { workflowId: string; workflowType: string; runId: string; kind: WorkflowTaskFailureKind; failure: string }): Promise<void> {
    await this.pool.query(
      `INSERT INTO workflow_task_failures (workflow_id, workflow_type, run_id, kind, failure)
       VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (workflow_id) DO UPDATE
         SET workflow_type = EXCLUDED.workflow_type, run_id = EXCLUDED.run_id, kind = EXCLUDED.kind,
             failure = EXCLUDED.failure, last_failed_at = now()`,
      [input.workflowId, input.workflowType, input.runId, input.kind, input.failure.slice(0, MAX_FAILURE_CHARS)],
    );
  }

  /**
   * Marks due for a check: their last failure is at least `graceMs` old, so a check never races the
   * failure being reported (right after it, Temporal may not have scheduled the retry yet).
   */
  async dueForCheck(graceMs: number, limit = 500): Promise<WorkflowTaskFailureMark[]> {
    const { rows } = await this.pool.query<MarkRow>(
      `SELECT * FROM workflow_task_failures WHERE last_failed_at <= now() - make_interval(secs => $1::double precision / 1000)
        ORDER BY checked_at NULLS FIRST LIMIT $2`,
      [graceMs, limit],
    );
    return rows.map(toMark);
  }

  /** The saga is still failing: records what the check saw. */
  async stillFailing(workflowId: string, attempt: number): Promise<void> {
    await this.pool.query('UPDATE workflow_task_failures SET checked_at = now(), attempt = $2 WHERE workflow_id = $1', [workflowId, attempt]);
  }

  /**
   * Removes a mark, unless the saga failed again since `seenLastFailedAt` (a failure reported while it was
   * being checked keeps its mark). Returns whether a mark was removed.
   */
  async clear(workflowId: string, seenLastFailedAt: string): Promise<boolean> {
    const { rowCount } = await this.pool.query('DELETE FROM workflow_task_failures WHERE workflow_id = $1 AND date_trunc(\'milliseconds\', last_failed_at) <= $2', [workflowId, seenLastFailedAt]);
    return (rowCount ?? 0) > 0;
  }

  async find(workflowId: string): Promise<WorkflowTaskFailureMark | undefined> {
    const { rows } = await this.pool.query<MarkRow>('SELECT * FROM workflow_task_failures WHERE workflow_id = $1', [workflowId]);
    return rows[0] ? toMark(rows[0]) : undefined;
  }

  async listByTypes(workflowTypes: readonly string[], limit: number): Promise<WorkflowTaskFailureMark[]> {
    const { rows } = await this.pool.query<MarkRow>('SELECT * FROM workflow_task_failures WHERE workflow_type = ANY($1) ORDER BY failing_since LIMIT $2', [workflowTypes, limit]);
    return rows.map(toMark);
  }

  async countByType(): Promise<{ workflowType: string; count: number }[]> {
    const { rows } = await this.pool.query<{ workflow_type: string; n: number }>('SELECT workflow_type, count(*)::int AS n FROM workflow_task_failures GROUP BY workflow_type');
    return rows.map((row) => ({ workflowType: row.workflow_type, count: row.n }));
  }
}

/** What staff see of a mark (the API's staff views); players and services never get it. */
export function staffViewOfMark(mark: WorkflowTaskFailureMark) {
  return {
    kind: mark.kind,
    detail: mark.failure,
    run_id: mark.runId,
    failing_since: mark.failingSince,
    last_failed_at: mark.lastFailedAt,
    ...(mark.attempt !== null ? { attempt: mark.attempt } : {}),
    ...(mark.checkedAt !== null ? { checked_at: mark.checkedAt } : {}),
  };
}
