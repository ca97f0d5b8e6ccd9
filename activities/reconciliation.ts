import { ApplicationFailure } from '@temporalio/common';
import { inTransaction, type Pool } from '../lib/db';
import {
  DEFAULT_RECONCILIATION_LOOKBACK_MS,
  type ItemKind,
  type MismatchKind,
  type ProviderItem,
  type ReconciliationResult,
  type ReconciliationWindow,
  type SettlementComparison,
} from '../contracts/reconciliation';
import { findAtAggregator, type Aggregator } from './aggregator-client';
import type { ProviderRegistry } from './provider-registry';
import { DEPOSIT_PROVIDER } from '../lib/providers';
import { readRun } from '../lib/reconciliation-runs';
import { checkInvariants, type InvariantReport, type InvariantViolation } from '../ledger';


/** One ledger transfer of a saga, found by its metadata (payout_id / deposit_id). */
export interface LedgerFact {
  transfer_id: number;
  kind: string;
  step: string | null;
  amount: number;
  currency: string;
  created_at: string;
}

export type SettlementMismatchKind = Exclude<MismatchKind, 'ledger_invariant'>;

export interface Finding {
  kind: SettlementMismatchKind;
  detail: string;
}

const REQUEST_TIMEOUT_MS = 30_000;
const LOOKUP_CONCURRENCY = 8;
const INSERT_CHUNK = 500;

const money = (minor: number, currency: string) => `${minor} ${currency}`;
const kindsOf = (facts: LedgerFact[]) => facts.map((f) => f.kind).join('+');

/**
 * The comparison rules for one reference. `cutoffMs` is the end of the covered window (action time − grace):
 * a provider event at or after it is not yet held against the ledger, and a ledger movement at or after it
 * is not yet held against the provider; both are compared by the next run, once the saga has had its grace.
 * Voids alone are never held against the provider: cancelled and refused-at-submission payouts never reach it.
 */
export function evaluateReference(itemKind: ItemKind, provider: ProviderItem | undefined, facts: LedgerFact[], cutoffMs: number): Finding[] {
  const before = (f: LedgerFact) => Date.parse(f.created_at) < cutoffMs;
  const of = (kind: string) => facts.filter((f) => f.kind === kind);
  const moved = itemKind === 'payout' ? facts.filter((f) => (f.kind === 'post' || f.kind === 'refund') && before(f)) : facts.filter((f) => f.step === 'credit' && before(f));

  if (!provider) {
    return moved.length > 0 ? [{ kind: 'missing_at_provider', detail: `ledger has ${kindsOf(moved)} but the provider has no ${itemKind} with this reference` }] : [];
  }
  if (provider.status === 'pending' || provider.settled_at === undefined) {
    return moved.length > 0 ? [{ kind: 'status_mismatch', detail: `ledger has ${kindsOf(moved)} but the provider's ${itemKind} is still ${provider.status}` }] : [];
  }
  if (Date.parse(provider.settled_at) >= cutoffMs) return [];

  const expected = provider.amount;
  const sameMoney = (f: LedgerFact) => f.amount === expected.minor_units && f.currency === expected.currency;
  const findings: Finding[] = [];
  const add = (kind: SettlementMismatchKind, detail: string) => findings.push({ kind, detail });

  if (itemKind === 'payout') {
    const [holds, posts, voids, refunds] = [of('hold'), of('post'), of('void'), of('refund')];
    switch (provider.status) {
      case 'settled':
      case 'returned': {
        if (posts.length === 0) {
          if (voids.length > 0) add('status_mismatch', `provider ${provider.status} the payout but the ledger voided its hold`);
          else add('missing_in_ledger', `provider ${provider.status} ${money(expected.minor_units, expected.currency)}; ledger has no post${holds.length > 0 ? ' (hold still pending)' : ''}`);
        } else if (!sameMoney(posts[0]!)) {
          add('amount_mismatch', `provider ${provider.status} ${money(expected.minor_units, expected.currency)}; ledger posted ${money(posts[0]!.amount, posts[0]!.currency)}`);
        }
        const returnedInWindow = provider.status === 'returned' && provider.returned_at !== undefined && Date.parse(provider.returned_at) < cutoffMs;
        if (returnedInWindow) {
          const refunded = refunds.reduce((sum, f) => sum + f.amount, 0);
          if (refunds.length === 0) add('missing_in_ledger', 'provider returned the payout; ledger has no refund');
          else if (refunded !== expected.minor_units || refunds.some((f) => f.currency !== expected.currency)) {
            add('amount_mismatch', `provider returned ${money(expected.minor_units, expected.currency)}; ledger refunded ${money(refunded, refunds[0]!.currency)}`);
          }
        } else if (provider.status === 'settled' && refunds.some(before)) {
          add('status_mismatch', 'ledger refunded the payout but the provider has not returned it');
        }
        break;
      }
      case 'failed':
        if (posts.length > 0) add('status_mismatch', `provider failed the payout (${provider.failure_code ?? 'no code'}) but the ledger posted it`);
        else if (voids.length === 0) {
          if (holds.length > 0) add('status_mismatch', `provider failed the payout (${provider.failure_code ?? 'no code'}) but its hold is still pending`);
          else add('missing_in_ledger', 'provider failed a payout the ledger never held');
        }
        break;
      default:
        add('status_mismatch', `unknown provider payout status ${provider.status}`);
    }
  } else {
    const credits = facts.filter((f) => f.step === 'credit');
    const chargebacks = facts.filter((f) => f.step === 'chargeback');
    const checkCredit = (status: string) => {
      if (credits.length === 0) add('missing_in_ledger', `provider ${status} ${money(expected.minor_units, expected.currency)}; ledger has no credit`);
      else if (credits.length > 1) add('amount_mismatch', `provider ${status} once; ledger credited ${credits.length} times`);
      else if (!sameMoney(credits[0]!)) add('amount_mismatch', `provider ${status} ${money(expected.minor_units, expected.currency)}; ledger credited ${money(credits[0]!.amount, credits[0]!.currency)}`);
    };
    switch (provider.status) {
      case 'succeeded':
        checkCredit('succeeded');
        if (chargebacks.length > 0) add('status_mismatch', 'provider reports the deposit succeeded; the ledger charged it back');
        break;
      case 'reversed':
        // Credited once, then taken back once for the same amount (the player's share and its debt together).
        checkCredit('reversed');
        if (chargebacks.length === 0) add('missing_in_ledger', `provider reversed ${money(expected.minor_units, expected.currency)}; ledger has no chargeback`);
        else if (chargebacks.length > 1 || !sameMoney(chargebacks[0]!)) add('amount_mismatch', `provider reversed ${money(expected.minor_units, expected.currency)}; ledger charged back ${chargebacks.map((c) => money(c.amount, c.currency)).join(' + ')}`);
        break;
      case 'failed':
        if (credits.length > 0) add('status_mismatch', `provider failed the deposit (${provider.failure_code ?? 'no code'}) but the ledger credited it`);
        break;
      default:
        add('status_mismatch', `unknown provider deposit status ${provider.status}`);
    }
  }
  // One finding per kind and reference (the table's key): details of the same kind are joined.
  const merged = new Map<SettlementMismatchKind, string[]>();
  for (const f of findings) merged.set(f.kind, [...(merged.get(f.kind) ?? []), f.detail]);
  return [...merged].map(([kind, details]) => ({ kind, detail: details.join('; ') }));
}

interface ReportItemBody {
  id: string;
  kind: string;
  reference: string;
  amount: { minor_units: number; currency: string };
  status: string;
  settled_at: string;
  returned_at?: string;
  failure_code?: string;
  return_reason?: string;
}

interface ProviderObjectBody {
  id: string;
  reference: string;
  status: string;
  amount: { minor_units: number; currency: string };
  settled_at?: string;
  succeeded_at?: string;
  failed_at?: string;
  returned_at?: string;
  failure_code?: string;
  return_reason?: string;
}

function unavailable(what: string, status: number): never {
  throw ApplicationFailure.retryable(`aggregator ${what} answered ${status}`, 'ProviderUnavailable');
}

/** The aggregator's settlement report: every payout/deposit that became final (or was returned) in [since, until). */
export async function fetchSettlementReport(aggregator: Aggregator, since: string, until: string): Promise<ProviderItem[]> {
  const url = `${aggregator.url}/v1/reports/settlements?since=${encodeURIComponent(since)}&until=${encodeURIComponent(until)}`;
  const response = await fetch(url, { headers: aggregator.headers, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
  if (!response.ok) unavailable('settlement report', response.status);
  const body = (await response.json()) as { items?: ReportItemBody[] };
  return (body.items ?? [])
    .filter((item) => item.kind === 'payout' || item.kind === 'deposit')
    .map((item) => ({
      id: item.id,
      kind: item.kind as ItemKind,
      reference: item.reference,
      amount: item.amount,
      status: item.status,
      settled_at: item.settled_at,
      ...(item.returned_at ? { returned_at: item.returned_at } : {}),
      ...(item.failure_code ? { failure_code: item.failure_code } : {}),
      ...(item.return_reason ? { return_reason: item.return_reason } : {}),
      source: 'report' as const,
    }));
}

/** The aggregator's current view of one reference; undefined when it never saw it. */
export async function lookupProviderItem(aggregator: Aggregator, kind: ItemKind, reference: string): Promise<ProviderItem | undefined> {
  const found = await findAtAggregator(aggregator, `${kind}s`, reference, `${kind} lookup`, REQUEST_TIMEOUT_MS);
  if (found === undefined) return undefined;
  const body = found as ProviderObjectBody;
  const finalAt = body.settled_at ?? body.succeeded_at ?? body.failed_at;
  return {
    id: body.id,
    kind,
    reference: body.reference,
    amount: body.amount,
    status: body.status,
    ...(finalAt && body.status !== 'pending' ? { settled_at: finalAt } : {}),
    ...(body.returned_at ? { returned_at: body.returned_at } : {}),
    ...(body.failure_code ? { failure_code: body.failure_code } : {}),
    ...(body.return_reason ? { return_reason: body.return_reason } : {}),
    source: 'lookup',
  };
}

async function mapLimited<T, R>(items: T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const lanes = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i]!);
    }
  });
  await Promise.all(lanes);
  return results;
}

const targetKey = (kind: ItemKind, reference: string) => `${kind}:${reference}`;

interface Target {
  itemKind: ItemKind;
  /** The payout or deposit id the ledger knows it by. */
  reference: string;
  /** Where it is, and under which reference there (a payout's current attempt). */
  at: { provider: string; reference: string };
  provider?: ProviderItem;
  lookup: boolean;
}

/** An earlier attempt of a payout that moved to another provider: it must have stayed unpaid where it was. */
function evaluateSupersededAttempt(item: ProviderItem, attempt: { payoutId: string; provider: string }): Finding[] {
  if (item.status === 'failed') return [];
  return [{ kind: 'status_mismatch', detail: `payout ${attempt.payoutId} moved to another provider after ${attempt.provider} reported it had no such payout or failed it, but ${attempt.provider} now reports it ${item.status}: it may be paid twice` }];
}

export interface RecordRunInput {
  runId: string;
  workflowId: string;
  window: ReconciliationWindow;
  actionTime: string;
  graceSeconds: number;
  scope: string[] | null;
  startedAt: string;
  invariants: InvariantReport;
  comparison: SettlementComparison;
}


/**
 * Reconciliation steps. Idempotent: mismatches are keyed by (run, kind, reference) and the run row by the
 * workflow run id, so a retried activity records nothing twice.
 */
export function createReconciliationActivities(deps: { pool: Pool; providers: ProviderRegistry }) {
  const { pool, providers } = deps;

  /** Where each payout is now (provider and reference), from the read model; a payout from before routing was at `sandbox` under its id. */
  async function currentAttempts(payoutIds: string[]): Promise<Map<string, { provider: string; reference: string }>> {
    const { rows } = await pool.query<{ payout_id: string; provider: string; provider_reference: string | null }>(
      'SELECT payout_id, provider, provider_reference FROM payouts WHERE payout_id = ANY($1::text[])',
      [payoutIds],
    );
    return new Map(rows.map((r) => [r.payout_id, { provider: r.provider, reference: r.provider_reference ?? r.payout_id }]));
  }

  return {
    /**
     * The window a run covers: from where the last full run ended (else `until − 24 h`) to `until − grace`.
     * Each settlement is thus compared exactly once, after its saga had at least `grace` to move.
     */
    async planReconciliationWindow(input: { until: string; graceSeconds: number; since?: string; scoped: boolean }): Promise<ReconciliationWindow> {
      const untilMs = Date.parse(input.until);
      let sinceMs = input.since !== undefined ? Date.parse(input.since) : undefined;
      if (sinceMs === undefined && !input.scoped) {
        const { rows } = await pool.query<{ until: Date | null }>('SELECT max(window_until) AS until FROM reconciliation_runs WHERE scope IS NULL');
        if (rows[0]?.until) sinceMs = rows[0].until.getTime();
      }
      sinceMs ??= untilMs - DEFAULT_RECONCILIATION_LOOKBACK_MS;
      const cutoffMs = Math.max(untilMs - input.graceSeconds * 1000, sinceMs);
      return { since: new Date(sinceMs).toISOString(), until: new Date(cutoffMs).toISOString() };
    },

    /** The ledger's own invariants (double entry, balances, holds resolved once, ...), on one snapshot. */
    async checkLedgerInvariants(): Promise<InvariantReport> {
      return checkInvariants(pool);
    },

    /**
     * Fetches the provider's report for the window, compares it with the ledger and stores the mismatches.
     * One activity, so the report (which can be large) never passes through workflow history.
     * Compared: every report item; every ledger post/refund/credit made in the window (looked up at the
     * provider when the report lacks it); in a full run, every reference the previous full run found open.
     */
    async reconcileSettlements(input: ReconciliationWindow & { runId: string; references?: string[] }): Promise<SettlementComparison> {
      const cutoffMs = Date.parse(input.until);
      const scope = input.references ? new Set(input.references) : undefined;
      const inScope = (reference: string) => !scope || scope.has(reference);
      const targets = new Map<string, Target>();
      const wanted: { itemKind: ItemKind; reference: string }[] = [];
      const want = (itemKind: ItemKind, reference: string) => {
        if (!targets.has(targetKey(itemKind, reference))) wanted.push({ itemKind, reference });
      };

      // Each provider's own report. A payout item is the payout's current attempt, or an earlier one it moved on from.
      const superseded: { item: ProviderItem; provider: string; payoutId: string }[] = [];
      const byProvider: Record<string, { providerItems: number; lookedUp: number; mismatches: number }> = {};
      let reportItems = 0;
      for (const name of providers.names()) {
        const items = await providers.measured(name, 'report', (aggregator) => fetchSettlementReport(aggregator, input.since, input.until));
        const { rows: attempts } = await pool.query<{ provider: string; reference: string; payout_id: string; superseded: string | null }>(
          'SELECT provider, reference, payout_id, superseded FROM payout_attempts WHERE provider = $1 AND reference = ANY($2::text[])',
          [name, items.filter((i) => i.kind === 'payout').map((i) => i.reference)],
        );
        const attemptOf = new Map(attempts.map((a) => [a.reference, a]));
        const inReport = items.filter((item) => inScope(item.kind === 'payout' ? (attemptOf.get(item.reference)?.payout_id ?? item.reference) : item.reference));
        byProvider[name] = { providerItems: inReport.length, lookedUp: 0, mismatches: 0 };
        reportItems += inReport.length;
        for (const item of inReport) {
          const attempt = item.kind === 'payout' ? attemptOf.get(item.reference) : undefined;
          if (attempt?.superseded) superseded.push({ item, provider: name, payoutId: attempt.payout_id });
          else {
            const reference = attempt?.payout_id ?? item.reference;
            targets.set(targetKey(item.kind, reference), { itemKind: item.kind, reference, at: { provider: name, reference: item.reference }, provider: item, lookup: false });
          }
        }
      }

      const { rows: moved } = await pool.query<{ item_kind: ItemKind; reference: string }>(
        `SELECT DISTINCT 'payout' AS item_kind, metadata->>'payout_id' AS reference FROM ledger_transfers
          WHERE created_at >= $1 AND created_at < $2 AND metadata ? 'payout_id' AND kind IN ('post', 'refund')
         UNION
         SELECT DISTINCT 'deposit', metadata->>'deposit_id' FROM ledger_transfers
          WHERE created_at >= $1 AND created_at < $2 AND metadata ? 'deposit_id' AND metadata->>'step' IN ('credit', 'chargeback')`,
        [input.since, input.until],
      );
      const ledgerMovements = moved.filter((m) => inScope(m.reference));
      for (const m of ledgerMovements) want(m.item_kind, m.reference);

      // Open findings are restated until they are resolved: the latest full run always lists all of them.
      let carriedOver = 0;
      const carriedAttempts: { payoutId: string; provider: string }[] = [];
      if (!scope) {
        const { rows: open } = await pool.query<{ item_kind: ItemKind; reference: string }>(
          `SELECT DISTINCT m.item_kind, m.reference FROM reconciliation_mismatches m
            WHERE m.kind <> 'ledger_invariant'
              AND m.run_id = (SELECT run_id FROM reconciliation_runs WHERE scope IS NULL ORDER BY finished_at DESC, run_id DESC LIMIT 1)`,
        );
        carriedOver = open.length;
        for (const o of open) {
          const at = o.reference.lastIndexOf('@');
          if (at === -1) want(o.item_kind, o.reference);
          else carriedAttempts.push({ payoutId: o.reference.slice(0, at), provider: o.reference.slice(at + 1) });
        }
      }
      // An earlier attempt found paid is asked again where it was, until it is resolved.
      const { rows: earlierAttempts } = await pool.query<{ payout_id: string; provider: string; reference: string }>(
        `SELECT a.payout_id, a.provider, a.reference FROM payout_attempts a JOIN unnest($1::text[], $2::text[]) AS c(payout_id, provider) USING (payout_id, provider)
          WHERE a.superseded IS NOT NULL`,
        [carriedAttempts.map((c) => c.payoutId), carriedAttempts.map((c) => c.provider)],
      );
      for (const a of earlierAttempts) {
        if (superseded.some((s) => s.payoutId === a.payout_id && s.provider === a.provider)) continue;
        const item = await providers.measured(a.provider, 'lookup', (aggregator) => lookupProviderItem(aggregator, 'payout', a.reference));
        if (item) superseded.push({ item, provider: a.provider, payoutId: a.payout_id });
      }

      // What the reports lacked is looked up where it is now: a payout at its current attempt's provider.
      const whereNow = await currentAttempts(wanted.filter((w) => w.itemKind === 'payout').map((w) => w.reference));
      for (const w of wanted) {
        const key = targetKey(w.itemKind, w.reference);
        if (targets.has(key)) continue;
        const at = (w.itemKind === 'payout' ? whereNow.get(w.reference) : undefined) ?? { provider: w.itemKind === 'payout' ? 'sandbox' : DEPOSIT_PROVIDER, reference: w.reference };
        targets.set(key, { ...w, at, lookup: true });
      }
      const toLookUp = [...targets.values()].filter((t) => t.lookup);
      await mapLimited(toLookUp, LOOKUP_CONCURRENCY, async (t) => {
        t.provider = await providers.measured(t.at.provider, 'lookup', (aggregator) => lookupProviderItem(aggregator, t.itemKind, t.at.reference));
        const counts = (byProvider[t.at.provider] ??= { providerItems: 0, lookedUp: 0, mismatches: 0 });
        counts.lookedUp += 1;
      });

      // Read after the report, so a movement the saga made because of a reported event is seen.
      const all = [...targets.values()];
      const facts = new Map<string, LedgerFact[]>();
      if (all.length > 0) {
        const { rows } = await pool.query<{ id: number; kind: string; step: string | null; amount: number; currency: string; created_at: Date; payout_id: string | null; deposit_id: string | null }>(
          `SELECT id, kind, metadata->>'step' AS step, amount, currency, created_at, metadata->>'payout_id' AS payout_id, metadata->>'deposit_id' AS deposit_id
             FROM ledger_transfers
            WHERE (metadata ? 'payout_id' AND metadata->>'payout_id' = ANY($1::text[]))
               OR (metadata ? 'deposit_id' AND metadata->>'deposit_id' = ANY($2::text[]))
            ORDER BY id`,
          [all.filter((t) => t.itemKind === 'payout').map((t) => t.reference), all.filter((t) => t.itemKind === 'deposit').map((t) => t.reference)],
        );
        for (const row of rows) {
          const key = row.payout_id !== null ? targetKey('payout', row.payout_id) : targetKey('deposit', row.deposit_id!);
          const fact: LedgerFact = { transfer_id: row.id, kind: row.kind, step: row.step, amount: row.amount, currency: row.currency, created_at: row.created_at.toISOString() };
          facts.set(key, [...(facts.get(key) ?? []), fact]);
        }
      }

      const mismatches = all.flatMap((t) => {
        const ledgerFacts = facts.get(targetKey(t.itemKind, t.reference)) ?? [];
        return evaluateReference(t.itemKind, t.provider, ledgerFacts, cutoffMs).map((f) => ({
          kind: f.kind,
          item_kind: t.itemKind,
          reference: t.reference,
          provider: t.at.provider,
          provider_item: t.provider ?? null,
          ledger_facts: ledgerFacts,
          detail: f.detail,
        }));
      });
      for (const s of superseded) {
        for (const f of evaluateSupersededAttempt(s.item, { payoutId: s.payoutId, provider: s.provider })) {
          // Keyed apart from the payout's own findings: `<payout id>@<provider>`.
          mismatches.push({ kind: f.kind, item_kind: 'payout', reference: `${s.payoutId}@${s.provider}`, provider: s.provider, provider_item: s.item, ledger_facts: facts.get(targetKey('payout', s.payoutId)) ?? [], detail: f.detail });
        }
      }
      for (const m of mismatches) (byProvider[m.provider] ??= { providerItems: 0, lookedUp: 0, mismatches: 0 }).mismatches += 1;
      for (let i = 0; i < mismatches.length; i += INSERT_CHUNK) {
        await pool.query(
          `INSERT INTO reconciliation_mismatches (run_id, kind, item_kind, reference, provider, provider_item, ledger_facts, detail)
           SELECT $1, m.kind, m.item_kind, m.reference, m.provider, m.provider_item, m.ledger_facts, m.detail
             FROM jsonb_to_recordset($2::jsonb) AS m(kind text, item_kind text, reference text, provider text, provider_item jsonb, ledger_facts jsonb, detail text)
            WHERE NOT EXISTS (SELECT 1 FROM reconciliation_runs WHERE run_id = $1)
           ON CONFLICT (run_id, kind, reference) WHERE kind <> 'ledger_invariant' DO NOTHING`,
          [input.runId, JSON.stringify(mismatches.slice(i, i + INSERT_CHUNK))],
        );
      }
      return { providerItems: reportItems, ledgerMovements: ledgerMovements.length, lookedUp: toLookUp.length, carriedOver, mismatches: mismatches.length, byProvider };
    },

    /**
     * Writes the finished run (once: keyed by the workflow run id) with the invariant checker's violations as
     * ledger_invariant mismatches. Counts come from the stored rows, so they agree with what staff will read.
     */
    async recordReconciliationRun(input: RecordRunInput): Promise<ReconciliationResult> {
      return inTransaction(pool, async (client) => {
        const { rows: counted } = await client.query<{ kind: MismatchKind; n: number }>(
          'SELECT kind, count(*)::int AS n FROM reconciliation_mismatches WHERE run_id = $1 GROUP BY kind',
          [input.runId],
        );
        const violations: InvariantViolation[] = input.invariants.violations;
        const settlementMismatches = counted.filter((c) => c.kind !== 'ledger_invariant').reduce((sum, c) => sum + c.n, 0);
        const total = settlementMismatches + violations.length;
        const inserted = await client.query(
          `INSERT INTO reconciliation_runs (run_id, workflow_id, window_since, window_until, action_time, grace_seconds, scope, started_at, status,
                                            invariant_violations, provider_items, ledger_movements, looked_up, carried_over, mismatches, by_provider)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
           ON CONFLICT (run_id) DO NOTHING`,
          [
            input.runId,
            input.workflowId,
            input.window.since,
            input.window.until,
            input.actionTime,
            input.graceSeconds,
            input.scope === null ? null : JSON.stringify(input.scope),
            input.startedAt,
            total === 0 ? 'clean' : 'mismatches',
            JSON.stringify(violations),
            input.comparison.providerItems,
            input.comparison.ledgerMovements,
            input.comparison.lookedUp,
            input.comparison.carriedOver,
            total,
            JSON.stringify(input.comparison.byProvider ?? {}),
          ],
        );
        // Only the attempt that wrote the run row writes its invariant findings (the primary key serialises attempts).
        if (inserted.rowCount === 1 && violations.length > 0) {
          await client.query(
            `INSERT INTO reconciliation_mismatches (run_id, kind, reference, ledger_facts, detail)
             SELECT $1, 'ledger_invariant', v.rule, v.detail, 'ledger invariant ' || v.rule || ' violated'
               FROM jsonb_to_recordset($2::jsonb) AS v(rule text, detail jsonb)`,
            [input.runId, JSON.stringify(violations)],
          );
        }
        const run = await readRun(client, input.runId);
        return { runId: run.run_id, since: run.window.since, until: run.window.until, status: run.status, mismatches: run.counts.mismatches, byKind: run.by_kind, invariantViolations: run.invariant_violations.length };
      });
    },
  };
}
