import { z } from 'zod';
import { inTransaction, type Pool } from '../../../lib/db';
import type { Logger } from '../../../lib/logger';
import { appendAudit } from '../ops/ops.stores';

/**
 * Degradation modes staff switch at run time:
 * - `normal`;
 * - `no-new-payouts`: new payouts are refused (503 PAYOUTS_PAUSED); sagas in flight, deposits, cancels,
 *   webhooks and staff actions go on;
 * - `read-only`: every change is refused (503 READ_ONLY) except provider webhooks (they complete money
 *   already in flight) and switching the mode back.
 */
export const PLATFORM_MODES = ['normal', 'no-new-payouts', 'read-only'] as const;
export type PlatformMode = (typeof PLATFORM_MODES)[number];

export const modeChange = z.strictObject({
  mode: z.enum(PLATFORM_MODES),
  reason: z.string().trim().min(3, 'say why (at least 3 characters)').max(1000),
});

export const modeView = z.object({ mode: z.enum(PLATFORM_MODES), reason: z.string(), changed_by: z.string(), changed_at: z.string() });
export type ModeView = z.infer<typeof modeView>;

type ModeRow = { mode: PlatformMode; reason: string; changed_by: string; changed_at: Date };
const viewOf = (row: ModeRow): ModeView => ({ mode: row.mode, reason: row.reason, changed_by: row.changed_by, changed_at: row.changed_at.toISOString() });

/**
 * The mode as this API instance knows it: read from PostgreSQL every PLATFORM_MODE_REFRESH_MS, so a change
 * made through any instance applies everywhere within that time. Until the first read it is `normal`;
 * if PostgreSQL cannot be read, the last mode read stays in force.
 */
export class PlatformModes {
  private current: ModeView = { mode: 'normal', reason: 'initial', changed_by: 'system', changed_at: new Date(0).toISOString() };
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly pool: Pool,
    private readonly logger: Logger,
  ) {}

  get mode(): PlatformMode {
    return this.current.mode;
  }

  view(): ModeView {
    return { ...this.current };
  }

  async start(refreshMs: number): Promise<void> {
    await this.refresh().catch((err: unknown) => this.logger.warn({ err }, 'platform mode not read yet; normal until it is'));
    const tick = () => {
      this.timer = setTimeout(() => void this.refresh().catch(() => undefined).finally(tick), refreshMs);
      this.timer.unref();
    };
    tick();
  }

  stop(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  async refresh(): Promise<ModeView> {
    const { rows } = await this.pool.query<ModeRow>('SELECT mode, reason, changed_by, changed_at FROM platform_mode');
    if (rows[0]) this.adopt(viewOf(rows[0]));
    return this.view();
  }

  /** Switches the mode for every instance, audited in the same transaction. */
  async change(change: z.infer<typeof modeChange>, actor: string): Promise<ModeView> {
    const row = await inTransaction(this.pool, async (db) => {
      const before = await db.query<{ mode: PlatformMode }>('SELECT mode FROM platform_mode FOR UPDATE');
      const { rows } = await db.query<ModeRow>(
        'UPDATE platform_mode SET mode = $1, reason = $2, changed_by = $3, changed_at = now() RETURNING mode, reason, changed_by, changed_at',
        [change.mode, change.reason, actor],
      );
      await appendAudit(db, { actor, action: 'platform:mode', target: 'platform', reason: change.reason, request: change, outcome: 'applied', detail: `${before.rows[0]?.mode ?? 'normal'} → ${change.mode}` });
      return rows[0]!;
    });
    this.adopt(viewOf(row));
    return this.view();
  }

  private adopt(next: ModeView): void {
    if (next.mode !== this.current.mode) this.logger.warn({ mode: next.mode, previous: this.current.mode, changedBy: next.changed_by, reason: next.reason }, 'platform mode changed');
    this.current = next;
  }
}
