import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Ledger, MovementInput, PostInput, RefundInput, Transfer, TransferResult, VoidInput } from '../../ledger';
import type { Pool } from '../../lib/db';
import { testPool, uniqueId } from '../support';
import { expectInvariantsHold, ledgerFixture } from '../support/ledger';

/**
 * Random sequences of ledger commands, with retries, reused keys, invalid input and references to
 * earlier transfers mixed in. Sequentially, every result is predicted by a small model of the ledger and
 * balances must equal the model's; in parallel batches, balances must equal the sum of the transfers the
 * ledger reported as 'ok'. The invariant checker must be clean after every run.
 */
let pool: Pool;
let ledger: Ledger;
let retries: string[];

beforeAll(() => {
  ({ pool, ledger, retries } = ledgerFixture(testPool()));
});
afterAll(async () => {
  await pool?.end();
});

const MISSING_ID = 999_999_999_999;

// ---- generated commands ----------------------------------------------------------------------------

type Gen =
  | { t: 'fund'; to: number; amount: number }
  | { t: 'transfer'; from: number; to: number; amount: number }
  | { t: 'hold'; from: number; to: number; amount: number }
  | { t: 'post'; ref: number; amount: number | undefined }
  | { t: 'void'; ref: number }
  | { t: 'refund'; ref: number; amount: number | undefined }
  | { t: 'retry'; ref: number }
  | { t: 'reuseKey'; ref: number; amount: number };

const amount = fc.oneof(
  { weight: 12, arbitrary: fc.integer({ min: 1, max: 2_000 }) },
  { weight: 1, arbitrary: fc.constantFrom(0, -7, 2.5, Number.MAX_SAFE_INTEGER + 2) },
);
const player = fc.integer({ min: 0, max: 2 });
/** 0-2 players, 3 the fees account, 4 the payouts-in-flight account. */
const anyAccount = fc.integer({ min: 0, max: 4 });
const ref = fc.nat({ max: 40 });

const gen: fc.Arbitrary<Gen> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ t: fc.constant('fund' as const), to: player, amount: fc.integer({ min: 1, max: 5_000 }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('transfer' as const), from: player, to: anyAccount, amount }) },
  { weight: 4, arbitrary: fc.record({ t: fc.constant('hold' as const), from: player, to: anyAccount, amount }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('post' as const), ref, amount: fc.option(amount, { nil: undefined }) }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('void' as const), ref }) },
  { weight: 2, arbitrary: fc.record({ t: fc.constant('refund' as const), ref, amount: fc.option(amount, { nil: undefined }) }) },
  { weight: 3, arbitrary: fc.record({ t: fc.constant('retry' as const), ref }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant('reuseKey' as const), ref, amount: fc.integer({ min: 1, max: 3_000 }) }) },
);

type Issued =
  | { command: 'transfer' | 'hold'; input: MovementInput }
  | { command: 'post'; input: PostInput }
  | { command: 'void'; input: VoidInput }
  | { command: 'refund'; input: RefundInput };

interface World {
  currency: string;
  players: string[];
  funding: string;
  fees: string;
  inFlight: string;
}

async function newWorld(currency: string): Promise<World> {
  const world: World = {
    currency,
    players: [uniqueId('p0'), uniqueId('p1'), uniqueId('p2')],
    funding: uniqueId('funding'),
    fees: uniqueId('fees'),
    inFlight: uniqueId('inflight'),
  };
  for (const id of world.players) await ledger.createAccount({ accountId: id, currency, kind: 'player' });
  await ledger.createAccount({ accountId: world.funding, currency, kind: 'operator_funding' });
  await ledger.createAccount({ accountId: world.fees, currency, kind: 'fees' });
  await ledger.createAccount({ accountId: world.inFlight, currency, kind: 'payouts_in_flight' });
  return world;
}

const pick = <T>(items: readonly T[], i: number): T | undefined => (items.length ? items[i % items.length] : undefined);

/** Turns a generated command into a concrete ledger command, given what happened so far. */
function concretize(g: Gen, world: World, issued: Issued[], holds: number[], posted: number[], all: number[]): Issued | undefined {
  const target = (i: number) => [...world.players, world.fees, world.inFlight][i]!;
  const key = uniqueId('key');
  switch (g.t) {
    case 'fund':
      return { command: 'transfer', input: { idempotencyKey: key, debitAccountId: world.funding, creditAccountId: world.players[g.to]!, amount: g.amount, currency: world.currency } };
    case 'transfer':
    case 'hold':
      return { command: g.t, input: { idempotencyKey: key, debitAccountId: world.players[g.from]!, creditAccountId: target(g.to), amount: g.amount, currency: world.currency } };
    case 'post':
      return { command: 'post', input: { idempotencyKey: key, pendingId: pick(holds, g.ref) ?? MISSING_ID, amount: g.amount } };
    case 'void':
      return { command: 'void', input: { idempotencyKey: key, pendingId: pick(holds, g.ref) ?? MISSING_ID } };
    case 'refund':
      // Mostly posted transfers, sometimes any transfer (holds, voids, refunds are not refundable).
      return { command: 'refund', input: { idempotencyKey: key, transferId: pick(g.ref % 4 ? posted : all, g.ref) ?? MISSING_ID, amount: g.amount } };
    case 'retry':
      return pick(issued, g.ref);
    case 'reuseKey': {
      const earlier = pick(issued, g.ref);
      if (!earlier) return undefined;
      return earlier.command === 'void'
        ? { command: 'post', input: { ...earlier.input } }
        : ({ command: earlier.command, input: { ...earlier.input, amount: g.amount } } as Issued);
    }
  }
}

function run(issued: Issued): Promise<TransferResult> {
  switch (issued.command) {
    case 'transfer':
      return ledger.transfer(issued.input);
    case 'hold':
      return ledger.hold(issued.input);
    case 'post':
      return ledger.post(issued.input);
    case 'void':
      return ledger.void(issued.input);
    case 'refund':
      return ledger.refund(issued.input);
  }
}

// ---- model -------------------------------------------------------------------------------------------

interface ModelBalance {
  debitsPending: number;
  debitsPosted: number;
  creditsPending: number;
  creditsPosted: number;
}
interface ModelTransfer {
  id: number;
  kind: Transfer['kind'];
  debit: string;
  credit: string;
  amount: number;
  resolution?: 'post' | 'void';
  refunded: number;
}

class Model {
  readonly balances = new Map<string, ModelBalance>();
  readonly transfers = new Map<number, ModelTransfer>();
  readonly byKey = new Map<string, { params: string; id: number; issued: Issued }>();

  constructor(private readonly world: World) {
    for (const id of [...world.players, world.funding, world.fees, world.inFlight]) {
      this.balances.set(id, { debitsPending: 0, debitsPosted: 0, creditsPending: 0, creditsPosted: 0 });
    }
  }

  /** The result the ledger must give, and for 'exists' the transfer id it must return. */
  predict(issued: Issued): { result: string; id?: number } {
    const { input } = issued;
    const amount = 'amount' in input ? input.amount : undefined;
    if ('debitAccountId' in input && input.debitAccountId === input.creditAccountId) return { result: 'same_account' };
    if (amount !== undefined && !(Number.isSafeInteger(amount) && amount > 0)) return { result: 'invalid_amount' };
    const earlier = this.byKey.get(input.idempotencyKey);
    if (earlier) return earlier.params === paramsOf(issued) ? { result: 'exists', id: earlier.id } : { result: firstDifference(earlier.issued, issued) };
    switch (issued.command) {
      case 'transfer':
      case 'hold':
        return this.world.players.includes(issued.input.debitAccountId) && this.available(issued.input.debitAccountId) < issued.input.amount
          ? { result: 'insufficient_funds' }
          : { result: 'ok' };
      case 'post':
      case 'void': {
        const pending = this.transfers.get(issued.input.pendingId);
        if (!pending) return { result: 'pending_transfer_not_found' };
        if (pending.kind !== 'hold') return { result: 'pending_transfer_not_pending' };
        if (pending.resolution) return { result: pending.resolution === 'post' ? 'pending_transfer_already_posted' : 'pending_transfer_already_voided' };
        if (issued.command === 'post' && (issued.input.amount ?? 0) > pending.amount) return { result: 'exceeds_pending_transfer_amount' };
        return { result: 'ok' };
      }
      case 'refund': {
        const original = this.transfers.get(issued.input.transferId);
        if (!original) return { result: 'transfer_not_found' };
        if (original.kind !== 'transfer' && original.kind !== 'post') return { result: 'transfer_not_refundable' };
        const refund = issued.input.amount ?? original.amount;
        if (original.refunded + refund > original.amount) return { result: 'refund_exceeds_original' };
        if (this.world.players.includes(original.credit) && this.available(original.credit) < refund) return { result: 'insufficient_funds' };
        return { result: 'ok' };
      }
    }
  }

  apply(issued: Issued, transfer: Transfer): void {
    this.byKey.set(issued.input.idempotencyKey, { params: paramsOf(issued), id: transfer.id, issued });
    const modelled: ModelTransfer = { id: transfer.id, kind: transfer.kind, debit: transfer.debitAccountId, credit: transfer.creditAccountId, amount: transfer.amount, refunded: 0 };
    this.transfers.set(transfer.id, modelled);
    const debit = this.balances.get(modelled.debit)!;
    const credit = this.balances.get(modelled.credit)!;
    switch (transfer.kind) {
      case 'hold':
        debit.debitsPending += transfer.amount;
        credit.creditsPending += transfer.amount;
        break;
      case 'post':
      case 'void': {
        const pending = this.transfers.get(transfer.pendingId!)!;
        pending.resolution = transfer.kind;
        debit.debitsPending -= pending.amount;
        credit.creditsPending -= pending.amount;
        if (transfer.kind === 'post') {
          debit.debitsPosted += transfer.amount;
          credit.creditsPosted += transfer.amount;
        }
        break;
      }
      case 'refund':
      case 'transfer':
        if (transfer.kind === 'refund') this.transfers.get(transfer.refundOfId!)!.refunded += transfer.amount;
        debit.debitsPosted += transfer.amount;
        credit.creditsPosted += transfer.amount;
        break;
    }
  }

  available(account: string): number {
    const b = this.balances.get(account)!;
    return b.creditsPosted - b.debitsPosted - b.debitsPending;
  }
}

/** How a repeat differs from the first command with its key: the first differing field, in the ledger's precedence. */
function firstDifference(first: Issued, repeat: Issued): string {
  if (first.command !== repeat.command) return 'exists_with_different_kind';
  const a = first.input as Partial<MovementInput & PostInput & RefundInput>;
  const b = repeat.input as Partial<MovementInput & PostInput & RefundInput>;
  for (const [field, result] of [
    ['debitAccountId', 'debit_account_id'],
    ['creditAccountId', 'credit_account_id'],
    ['pendingId', 'pending_id'],
    ['transferId', 'refund_of_id'],
    ['amount', 'amount'],
    ['currency', 'currency'],
  ] as const) {
    if (a[field] !== b[field]) return `exists_with_different_${result}`;
  }
  throw new Error('a repeat with other parameters differs in some field');
}

function paramsOf(issued: Issued): string {
  const { idempotencyKey: _key, metadata: _metadata, ...params } = issued.input;
  return JSON.stringify([issued.command, params, 'amount' in params ? (params.amount ?? null) : null]);
}

async function expectBalances(balances: Map<string, ModelBalance>): Promise<void> {
  for (const [account, b] of balances) {
    const posted = b.creditsPosted - b.debitsPosted;
    expect(await ledger.getBalance(account)).toMatchObject({ account_id: account, posted, held: b.debitsPending, available: posted - b.debitsPending });
  }
}

// ---- properties -------------------------------------------------------------------------------------

describe('ledger under random command sequences', () => {
  it('sequentially: every result is the predicted one, balances equal the model, invariants hold', async () => {
    await fc.assert(
      fc.asyncProperty(fc.constantFrom('EUR', 'JPY', 'BHD'), fc.array(gen, { minLength: 5, maxLength: 40 }), async (currency, gens) => {
        const world = await newWorld(currency);
        const model = new Model(world);
        const issued: Issued[] = [];
        const holds: number[] = [];
        const posted: number[] = [];
        const all: number[] = [];
        // Funded players first, so that holds, posts and refunds mostly succeed and build on each other.
        const seed: Gen[] = [0, 1, 2].map((to) => ({ t: 'fund', to, amount: 5_000 }));
        for (const g of [...seed, ...gens]) {
          const command = concretize(g, world, issued, holds, posted, all);
          if (!command) continue;
          const expected = model.predict(command);
          const actual = await run(command);
          expect({ command, result: actual.result }).toEqual({ command, result: expected.result });
          if (actual.result === 'exists') expect(actual.transfer.id).toBe(expected.id);
          if (actual.result === 'ok') {
            model.apply(command, actual.transfer);
            all.push(actual.transfer.id);
            if (actual.transfer.kind === 'hold') holds.push(actual.transfer.id);
            if (actual.transfer.kind === 'transfer' || actual.transfer.kind === 'post') posted.push(actual.transfer.id);
          }
          issued.push(command);
        }
        await expectBalances(model.balances);
        await expectInvariantsHold(pool);
      }),
      { numRuns: 40 },
    );
    expect(retries).toEqual([]);
  });

  it('in parallel batches with duplicates: each key moves money at most once and balances equal the reported transfers', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.array(fc.tuple(gen, fc.integer({ min: 1, max: 3 })), { minLength: 2, maxLength: 8 }), { minLength: 1, maxLength: 4 }),
        async (batches) => {
          const world = await newWorld('EUR');
          for (const p of world.players) {
            await ledger.transfer({ idempotencyKey: uniqueId('seed'), debitAccountId: world.funding, creditAccountId: p, amount: 4_000, currency: 'EUR' });
          }
          const issued: Issued[] = [];
          const holds: number[] = [];
          const posted: number[] = [];
          const all: number[] = [];
          const okByKey = new Map<string, Transfer>();
          const idsByKey = new Map<string, Set<number>>();
          for (const batch of batches) {
            // Each command is sent `copies` times at once, as a retrying client would.
            const commands = batch.flatMap(([g, copies]) => {
              const command = concretize(g, world, issued, holds, posted, all);
              return command ? Array.from({ length: copies }, () => command) : [];
            });
            const outcomes = await Promise.all(commands.map(run));
            for (const [i, outcome] of outcomes.entries()) {
              const command = commands[i]!;
              issued.push(command);
              if (!('transfer' in outcome)) continue;
              const key = command.input.idempotencyKey;
              const ids = idsByKey.get(key) ?? new Set<number>();
              idsByKey.set(key, ids.add(outcome.transfer.id));
              if (outcome.result === 'ok') {
                expect(okByKey.has(key), `second 'ok' for key ${key}`).toBe(false);
                okByKey.set(key, outcome.transfer);
                all.push(outcome.transfer.id);
                if (outcome.transfer.kind === 'hold') holds.push(outcome.transfer.id);
                if (outcome.transfer.kind === 'transfer' || outcome.transfer.kind === 'post') posted.push(outcome.transfer.id);
              }
            }
          }
          for (const ids of idsByKey.values()) expect(ids.size).toBe(1);

          // Replay the reported transfers in id order (commit order within a key's accounts) into balances.
          const model = new Model(world);
          for (const p of world.players) model.balances.get(p)!.creditsPosted = 4_000;
          model.balances.get(world.funding)!.debitsPosted = 12_000;
          const reported = [...okByKey.entries()].sort(([, a], [, b]) => a.id - b.id);
          for (const [key, transfer] of reported) {
            const command = issued.find((c) => c.input.idempotencyKey === key)!;
            model.apply(command, transfer);
          }
          await expectBalances(model.balances);
          await expectInvariantsHold(pool);
        },
      ),
      { numRuns: 25 },
    );
    expect(retries).toEqual([]);
  });
});
