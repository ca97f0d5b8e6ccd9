import { describe, expect, it } from 'vitest';
import { evaluateReference, type LedgerFact } from '../../activities/reconciliation';
import type { ProviderItem } from '../../contracts/reconciliation';

const CUTOFF = Date.parse('2030-01-01T12:00:00.000Z');
const at = (secondsFromCutoff: number) => new Date(CUTOFF + secondsFromCutoff * 1000).toISOString();

let nextId = 1;
const fact = (kind: string, amount = 500, created = at(-60), step: string | null = kind, currency = 'EUR'): LedgerFact => ({ transfer_id: nextId++, kind, step, amount, currency, created_at: created });
const payout = (status: string, extra: Partial<ProviderItem> = {}): ProviderItem => ({
  id: 'po_x',
  kind: 'payout',
  reference: 'po_ref',
  amount: { minor_units: 500, currency: 'EUR' },
  status,
  settled_at: at(-120),
  source: 'report',
  ...extra,
});
const deposit = (status: string, extra: Partial<ProviderItem> = {}): ProviderItem => ({ ...payout(status, extra), id: 'dp_x', kind: 'deposit', ...extra });
const kinds = (findings: { kind: string }[]) => findings.map((f) => f.kind);

describe('reconciliation rules: provider item vs the ledger facts of one reference', () => {
  it('payout settled ⇒ a post of the same amount and currency', () => {
    expect(evaluateReference('payout', payout('settled'), [fact('hold'), fact('post')], CUTOFF)).toEqual([]);
    expect(kinds(evaluateReference('payout', payout('settled'), [], CUTOFF))).toEqual(['missing_in_ledger']);
    expect(evaluateReference('payout', payout('settled'), [fact('hold')], CUTOFF)[0]).toMatchObject({ kind: 'missing_in_ledger', detail: expect.stringContaining('hold still pending') });
    expect(kinds(evaluateReference('payout', payout('settled'), [fact('hold', 400), fact('post', 400)], CUTOFF))).toEqual(['amount_mismatch']);
    expect(kinds(evaluateReference('payout', payout('settled'), [fact('hold', 500, at(-60), 'hold', 'USD'), fact('post', 500, at(-60), 'post', 'USD')], CUTOFF))).toEqual(['amount_mismatch']);
    expect(kinds(evaluateReference('payout', payout('settled'), [fact('hold'), fact('void')], CUTOFF))).toEqual(['status_mismatch']);
    expect(kinds(evaluateReference('payout', payout('settled'), [fact('hold'), fact('post'), fact('refund')], CUTOFF))).toEqual(['status_mismatch']);
  });

  it('payout returned ⇒ post + refund; a return within the grace period needs no refund yet', () => {
    const returned = payout('returned', { returned_at: at(-30) });
    expect(evaluateReference('payout', returned, [fact('hold'), fact('post'), fact('refund')], CUTOFF)).toEqual([]);
    expect(evaluateReference('payout', returned, [fact('hold'), fact('post')], CUTOFF)).toEqual([{ kind: 'missing_in_ledger', detail: 'provider returned the payout; ledger has no refund' }]);
    expect(kinds(evaluateReference('payout', returned, [fact('hold'), fact('post'), fact('refund', 200)], CUTOFF))).toEqual(['amount_mismatch']);
    // No post and no refund: one finding of the kind, both reasons in its detail.
    const both = evaluateReference('payout', returned, [], CUTOFF);
    expect(both).toHaveLength(1);
    expect(both[0]!.detail).toMatch(/no post.*no refund/);
    const justReturned = payout('returned', { returned_at: at(10) });
    expect(evaluateReference('payout', justReturned, [fact('hold'), fact('post')], CUTOFF)).toEqual([]);
    expect(evaluateReference('payout', justReturned, [fact('hold'), fact('post'), fact('refund', 500, at(20))], CUTOFF)).toEqual([]);
  });

  it('payout failed ⇒ void and no post', () => {
    expect(evaluateReference('payout', payout('failed'), [fact('hold'), fact('void')], CUTOFF)).toEqual([]);
    expect(kinds(evaluateReference('payout', payout('failed'), [fact('hold'), fact('post')], CUTOFF))).toEqual(['status_mismatch']);
    expect(kinds(evaluateReference('payout', payout('failed'), [fact('hold')], CUTOFF))).toEqual(['status_mismatch']);
    expect(kinds(evaluateReference('payout', payout('failed'), [], CUTOFF))).toEqual(['missing_in_ledger']);
  });

  it('deposit succeeded ⇒ exactly one credit of the same amount; failed ⇒ no credit', () => {
    const credit = (amount = 500) => fact('transfer', amount, at(-60), 'credit');
    expect(evaluateReference('deposit', deposit('succeeded'), [credit()], CUTOFF)).toEqual([]);
    expect(kinds(evaluateReference('deposit', deposit('succeeded'), [], CUTOFF))).toEqual(['missing_in_ledger']);
    expect(kinds(evaluateReference('deposit', deposit('succeeded'), [credit(499)], CUTOFF))).toEqual(['amount_mismatch']);
    expect(kinds(evaluateReference('deposit', deposit('succeeded'), [credit(), credit()], CUTOFF))).toEqual(['amount_mismatch']);
    expect(evaluateReference('deposit', deposit('failed'), [], CUTOFF)).toEqual([]);
    expect(kinds(evaluateReference('deposit', deposit('failed'), [credit()], CUTOFF))).toEqual(['status_mismatch']);
  });

  it('ledger movements the provider does not know: missing_at_provider (voids alone are never the provider’s)', () => {
    expect(kinds(evaluateReference('payout', undefined, [fact('hold'), fact('post')], CUTOFF))).toEqual(['missing_at_provider']);
    expect(kinds(evaluateReference('deposit', undefined, [fact('transfer', 500, at(-60), 'credit')], CUTOFF))).toEqual(['missing_at_provider']);
    // Cancelled or refused at submission: hold + void, never sent to the provider.
    expect(evaluateReference('payout', undefined, [fact('hold'), fact('void')], CUTOFF)).toEqual([]);
    // A post within the grace period is left to the next run.
    expect(evaluateReference('payout', undefined, [fact('hold'), fact('post', 500, at(5))], CUTOFF)).toEqual([]);
  });

  it('grace period: provider outcomes at or after the cutoff are left to the next run; pending ones are compared', () => {
    expect(evaluateReference('payout', payout('settled', { settled_at: at(0) }), [], CUTOFF)).toEqual([]);
    expect(evaluateReference('deposit', deposit('succeeded', { settled_at: at(30) }), [], CUTOFF)).toEqual([]);
    const pending = payout('pending', { settled_at: undefined, source: 'lookup' });
    expect(evaluateReference('payout', pending, [fact('hold')], CUTOFF)).toEqual([]);
    expect(kinds(evaluateReference('payout', pending, [fact('hold'), fact('post')], CUTOFF))).toEqual(['status_mismatch']);
  });
});
