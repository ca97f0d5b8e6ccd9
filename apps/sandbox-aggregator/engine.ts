import { randomBytes } from 'node:crypto';
import type { Logger } from '../../lib/logger';
import {
  maskDestination,
  randomId,
  snapshot,
  type Deposit,
  type Payout,
  type WebhookEvent,
  type WebhookEventType,
} from './objects';
import { failureCodeOf, finalOutcomeOf, returnReasonOf, reverseAfterMsOf, supportsDeposits, supportsPayouts } from './scenarios';
import type { DepositRequest, PayoutRequest, ResolveDeposit, ResolvePayout, ReverseDeposit, Scenario } from './schemas';
import type { Scheduler } from './scheduler';
import { inUnit, type Resource, type SandboxStore, type Unit } from './store';
import type { WebhookDispatcher } from './webhooks';

export interface EngineOptions {
  store: SandboxStore;
  scheduler: Scheduler;
  webhooks: WebhookDispatcher;
  logger: Logger;
  now: () => Date;
  callbackDelayMs: number;
}

export type TransitionResult<T> = { ok: true; object: T } | { ok: false; object: T; message: string };

export interface SettlementItem {
  id: string;
  kind: 'payout' | 'deposit';
  reference: string;
  amount: Payout['amount'];
  status: Payout['status'] | Deposit['status'];
  /** When it reached its first final state (settled, succeeded or failed). */
  settled_at: string;
  returned_at?: string;
  failure_code?: string;
  return_reason?: string;
  /** A deposit reversed (charged back) after it succeeded: when, and why. */
  reversed_at?: string;
  reversal_reason?: string;
}

/**
 * How a step announces itself. once/twice: that many deliveries of the event (the second after the first's
 * first attempt), and a third with a new id for twice_and_distinct; hold: kept back until a later step
 * releases it behind its own event (out_of_order); then_held: this step's event, then the held one.
 */
type Send = 'none' | 'once' | 'twice' | 'twice_and_distinct' | 'hold' | 'then_held';

/**
 * One scripted change of a resource, stored with its due time. A finish with reverse_after_ms that makes a
 * deposit succeed writes a reverse step due that much later, announced as the finish was (its `send`).
 */
type Step =
  | { do: 'finish'; outcome: 'settle' | 'fail'; failure_code: string; send: Send; reverse_after_ms?: number }
  | { do: 'return'; return_reason: string; send: Send }
  | { do: 'reverse'; reversal_reason: string; send: Send };

/** Why a scripted reversal happens. */
const SCRIPTED_REVERSAL_REASON = 'chargeback';

/** A step whose turn has not come (an earlier one of its resource is still due) or whose store is unreachable waits this long. */
const STEP_RETRY_MS = 200;

/**
 * The aggregator's own lifecycle: creates payouts and deposits, writes each one's scenario as steps due at a
 * time, plays them on the scheduler, and turns every status change into a webhook delivery (unless the
 * scenario says to stay silent). Steps and deliveries are in the database: a restart plays what was due.
 */
export class SandboxEngine {
  constructor(private readonly opts: EngineOptions) {}

  async createPayout(unit: Unit, request: PayoutRequest, scenario: Scenario): Promise<Payout> {
    const at = this.nowIso();
    const payout: Payout = {
      id: randomId('po'),
      object: 'payout',
      reference: request.reference,
      status: 'pending',
      amount: { ...request.amount },
      destination: maskDestination(request.destination),
      ...(request.metadata ? { metadata: snapshot(request.metadata) } : {}),
      created_at: at,
      updated_at: at,
    };
    await this.opts.store.insert(unit, { kind: 'payout', object: payout });
    await this.plan(unit, { kind: 'payout', object: payout }, scenario);
    unit.afterCommit(() =>
      this.opts.logger.info(
        {
          payout_id: payout.id,
          reference: payout.reference,
          amount: payout.amount,
          destination_method: payout.destination.method,
          destination_last4: payout.destination.last4,
          scenario: scenario.scenario,
        },
        'sandbox payout created',
      ),
    );
    return payout;
  }

  async createDeposit(unit: Unit, request: DepositRequest, scenario: Scenario, baseUrl: string): Promise<Deposit> {
    const at = this.nowIso();
    const id = randomId('dp');
    const checkoutSecret = randomBytes(16).toString('hex');
    const deposit: Deposit = {
      id,
      object: 'deposit',
      reference: request.reference,
      status: 'pending',
      amount: { ...request.amount },
      checkout_url: `${baseUrl}/sandbox/checkout/${id}?secret=${checkoutSecret}`,
      ...(request.metadata ? { metadata: snapshot(request.metadata) } : {}),
      created_at: at,
      updated_at: at,
    };
    await this.opts.store.insert(unit, { kind: 'deposit', object: deposit }, checkoutSecret);
    await this.plan(unit, { kind: 'deposit', object: deposit }, scenario);
    unit.afterCommit(() => this.opts.logger.info({ deposit_id: id, reference: deposit.reference, amount: deposit.amount, scenario: scenario.scenario }, 'sandbox deposit created'));
    return deposit;
  }

  /**
   * A scenario registered after submission re-scripts whatever is still pending under that reference.
   * Returns the ids it was applied to.
   */
  async rescript(unit: Unit, reference: string, scenario: Scenario): Promise<{ applied: string[]; refused: { id: string; message: string }[] }> {
    const applied: string[] = [];
    const refused: { id: string; message: string }[] = [];
    for (const resource of await this.opts.store.pendingByReference(unit, reference)) {
      const { id } = resource.object;
      // Submission-time behaviours (reject, slow, error_then_ok, accept_then_error's error answers) are past for an existing resource; their outcome is not.
      if (scenario.scenario === 'reject') refused.push({ id, message: 'reject only applies to a submission' });
      else if (resource.kind === 'deposit' && !supportsDeposits(scenario)) refused.push({ id, message: `${scenario.scenario} is for payouts only` });
      else if (resource.kind === 'payout' && !supportsPayouts(scenario)) refused.push({ id, message: 'reverse_after_ms is for deposits only' });
      else {
        await this.cancelPlan(unit, id);
        await this.plan(unit, resource, scenario);
        applied.push(id);
      }
    }
    return { applied, refused };
  }

  /** Staff-style control: settles, fails or returns a payout now; undefined when there is no such payout. */
  async resolvePayout(unit: Unit, id: string, command: ResolvePayout): Promise<TransitionResult<Payout> | undefined> {
    const resource = await this.opts.store.resource(id, unit.tx, true);
    if (resource?.kind !== 'payout') return undefined;
    const payout = resource.object;
    const expected = command.outcome === 'return' ? 'settled' : 'pending';
    if (payout.status !== expected) return { ok: false, object: snapshot(payout), message: `cannot ${command.outcome} a payout that is ${payout.status}` };
    await this.cancelPlan(unit, id);
    const event =
      command.outcome === 'return'
        ? this.returnPayout(payout, command.return_reason ?? 'account_closed')
        : this.finish(resource, command.outcome, command.failure_code ?? failureCodeOf({ scenario: 'fail' }, 'payout'));
    await this.opts.store.update(unit, payout);
    if (command.send_webhook) await this.opts.webhooks.send(unit, event, payout.reference);
    return { ok: true, object: snapshot(payout) };
  }

  async resolveDeposit(unit: Unit, id: string, command: ResolveDeposit): Promise<TransitionResult<Deposit> | undefined> {
    const resource = await this.opts.store.resource(id, unit.tx, true);
    if (resource?.kind !== 'deposit') return undefined;
    const deposit = resource.object;
    if (deposit.status !== 'pending') return { ok: false, object: snapshot(deposit), message: `cannot resolve a deposit that is ${deposit.status}` };
    await this.cancelPlan(unit, id);
    const outcome = command.outcome === 'succeed' ? 'settle' : 'fail';
    const event = this.finish(resource, outcome, command.failure_code ?? failureCodeOf({ scenario: 'fail' }, 'deposit'));
    await this.opts.store.update(unit, deposit);
    if (command.send_webhook) await this.opts.webhooks.send(unit, event, deposit.reference);
    return { ok: true, object: snapshot(deposit) };
  }

  /**
   * Staff-style control: reverses (charges back) a succeeded deposit now; on one already reversed, answers it as
   * it is and sends nothing (idempotent). undefined when there is no such deposit.
   */
  async reverseDeposit(unit: Unit, id: string, command: ReverseDeposit): Promise<TransitionResult<Deposit> | undefined> {
    const resource = await this.opts.store.resource(id, unit.tx, true);
    if (resource?.kind !== 'deposit') return undefined;
    const deposit = resource.object;
    if (deposit.status === 'reversed') return { ok: true, object: snapshot(deposit) };
    if (deposit.status !== 'succeeded') return { ok: false, object: snapshot(deposit), message: `cannot reverse a deposit that is ${deposit.status}` };
    // A scripted reversal still due is superseded by this one.
    await this.cancelPlan(unit, id);
    const event = this.chargeBack(deposit, command.reason);
    await this.opts.store.update(unit, deposit);
    if (command.send_webhook) await this.opts.webhooks.send(unit, event, deposit.reference);
    return { ok: true, object: snapshot(deposit) };
  }

  /** Everything whose final state (or return, or reversal) falls in [since, until). */
  async settlementReport(since: Date, until: Date): Promise<SettlementItem[]> {
    const items: SettlementItem[] = [];
    for (const resource of await this.opts.store.finalBetween(since, until)) {
      if (resource.kind === 'payout') {
        const p = resource.object;
        items.push({
          id: p.id,
          kind: 'payout',
          reference: p.reference,
          amount: { ...p.amount },
          status: p.status,
          settled_at: (p.settled_at ?? p.failed_at)!,
          ...(p.returned_at ? { returned_at: p.returned_at } : {}),
          ...(p.failure_code ? { failure_code: p.failure_code } : {}),
          ...(p.return_reason ? { return_reason: p.return_reason } : {}),
        });
      } else {
        const d = resource.object;
        items.push({
          id: d.id,
          kind: 'deposit',
          reference: d.reference,
          amount: { ...d.amount },
          status: d.status,
          settled_at: (d.succeeded_at ?? d.failed_at)!,
          ...(d.failure_code ? { failure_code: d.failure_code } : {}),
          ...(d.reversed_at ? { reversed_at: d.reversed_at } : {}),
          ...(d.reversal_reason ? { reversal_reason: d.reversal_reason } : {}),
        });
      }
    }
    return items.sort((a, b) => a.settled_at.localeCompare(b.settled_at) || a.id.localeCompare(b.id));
  }

  /** After a restart: every step still due is scheduled again (those past due at once, in their order). */
  async resume(): Promise<number> {
    const steps = await this.opts.store.dueSteps<Step>();
    const now = this.opts.now().getTime();
    for (const step of steps) this.schedule(step.id, step.resourceId, Math.max(0, step.dueAt.getTime() - now));
    return steps.length;
  }

  /** Writes the scenario's outcome as steps due from now. */
  private async plan(unit: Unit, resource: Resource, scenario: Scenario): Promise<void> {
    const delayMs = scenario.callback_delay_ms ?? this.opts.callbackDelayMs;
    const outcome = finalOutcomeOf(scenario);
    const failure_code = failureCodeOf(scenario, resource.kind);
    const returnDelayMs = 'return_delay_ms' in scenario && scenario.return_delay_ms !== undefined ? scenario.return_delay_ms : this.opts.callbackDelayMs;
    // Counted from the success itself (the finish step writes the reverse step when it plays).
    const reverseAfterMs = resource.kind === 'deposit' ? reverseAfterMsOf(scenario) : undefined;
    const then = reverseAfterMs !== undefined ? { reverse_after_ms: reverseAfterMs } : {};
    const steps: [number, Step][] = [];
    switch (scenario.scenario) {
      case 'stay_pending':
      case 'reject':
        break;
      case 'never_callback':
        // The status endpoint moves on; the platform only learns by polling.
        steps.push([delayMs, { do: 'finish', outcome, failure_code, send: 'none', ...then }]);
        break;
      case 'duplicate_callback':
        steps.push([delayMs, { do: 'finish', outcome, failure_code, send: scenario.also_distinct_id ? 'twice_and_distinct' : 'twice', ...then }]);
        break;
      case 'return_after_settlement':
        steps.push([delayMs, { do: 'finish', outcome: 'settle', failure_code, send: 'once' }]);
        steps.push([delayMs + returnDelayMs, { do: 'return', return_reason: returnReasonOf(scenario), send: 'once' }]);
        break;
      case 'out_of_order':
        // The later event arrives first; the older settled event (older created_at) follows it.
        steps.push([delayMs, { do: 'finish', outcome: 'settle', failure_code, send: 'hold' }]);
        steps.push([delayMs + returnDelayMs, { do: 'return', return_reason: returnReasonOf(scenario), send: 'then_held' }]);
        break;
      case 'settle':
      case 'fail':
      case 'slow':
      case 'error_then_ok':
      case 'accept_then_error':
        steps.push([delayMs, { do: 'finish', outcome, failure_code, send: 'once', ...then }]);
        break;
    }
    const from = this.opts.now().getTime();
    for (const [afterMs, step] of steps) await this.addStep(unit, resource.object.id, from, afterMs, step);
  }

  /** Writes one step due afterMs from `from`, scheduled once the unit commits. */
  private async addStep(unit: Unit, resourceId: string, from: number, afterMs: number, step: Step): Promise<void> {
    const id = await this.opts.store.insertStep(unit, resourceId, new Date(from + afterMs), step);
    unit.afterCommit(() => this.schedule(id, resourceId, afterMs));
  }

  private async cancelPlan(unit: Unit, resourceId: string): Promise<void> {
    await this.opts.store.cancelSteps(unit, resourceId);
    unit.afterCommit(() => this.opts.scheduler.cancel(resourceId));
  }

  private schedule(stepId: number, resourceId: string, delayMs: number): void {
    this.opts.scheduler.after(delayMs, () => this.runStep(stepId, resourceId), resourceId);
  }

  /** Plays one step, in its resource's order, in one transaction with the deliveries it makes. */
  private async runStep(stepId: number, resourceId: string): Promise<void> {
    let retry = false;
    try {
      await inUnit(this.opts.store.pool, async (unit) => {
        const resource = await this.opts.store.resource(resourceId, unit.tx, true);
        const row = await this.opts.store.claimStep<Step>(unit, stepId);
        if (!resource || !row) return; // cancelled or already played
        if (await this.opts.store.hasEarlierDueStep(unit, row)) {
          retry = true;
          return;
        }
        await this.apply(unit, resource, row.step);
        await this.opts.store.completeStep(unit, stepId);
      });
    } catch (err) {
      if (this.opts.scheduler.isClosed) return;
      this.opts.logger.warn({ err, step_id: stepId, resource_id: resourceId }, 'sandbox store unavailable; step postponed');
      retry = true;
    }
    if (retry) this.schedule(stepId, resourceId, STEP_RETRY_MS);
  }

  private async apply(unit: Unit, resource: Resource, step: Step): Promise<void> {
    const { webhooks } = this.opts;
    const { object } = resource;
    let event: WebhookEvent;
    if (step.do === 'finish') {
      if (object.status !== 'pending') return;
      event = this.finish(resource, step.outcome, step.failure_code);
      if (resource.kind === 'deposit' && resource.object.status === 'succeeded' && step.reverse_after_ms !== undefined) {
        await this.addStep(unit, object.id, this.opts.now().getTime(), step.reverse_after_ms, { do: 'reverse', reversal_reason: SCRIPTED_REVERSAL_REASON, send: step.send });
      }
    } else if (step.do === 'return') {
      if (resource.kind !== 'payout' || resource.object.status !== 'settled') return;
      event = this.returnPayout(resource.object, step.return_reason);
    } else {
      if (resource.kind !== 'deposit' || resource.object.status !== 'succeeded') return;
      event = this.chargeBack(resource.object, step.reversal_reason);
    }
    await this.opts.store.update(unit, object);
    switch (step.send) {
      case 'none':
        return;
      case 'hold':
        await webhooks.send(unit, event, object.reference, { held: true });
        return;
      case 'once':
        await webhooks.send(unit, event, object.reference);
        return;
      case 'then_held': {
        const first = await webhooks.send(unit, event, object.reference);
        await webhooks.release(unit, object.id, first);
        return;
      }
      case 'twice':
      case 'twice_and_distinct': {
        const first = await webhooks.send(unit, event, object.reference);
        const second = await webhooks.send(unit, event, object.reference, { after: first });
        if (step.send === 'twice_and_distinct') await webhooks.send(unit, { ...snapshot(event), id: randomId('evt') }, object.reference, { after: second });
        return;
      }
    }
  }

  /** pending → final (changes the object; the caller stores it); returns the event announcing it. */
  private finish(resource: Resource, outcome: 'settle' | 'fail', failureCode: string): WebhookEvent {
    const at = this.nowIso();
    if (resource.kind === 'payout') {
      const p = resource.object;
      p.updated_at = at;
      if (outcome === 'settle') {
        p.status = 'settled';
        p.settled_at = at;
      } else {
        p.status = 'failed';
        p.failed_at = at;
        p.failure_code = failureCode;
      }
      this.opts.logger.info({ payout_id: p.id, reference: p.reference, status: p.status, failure_code: p.failure_code }, 'sandbox payout final');
      return this.event(outcome === 'settle' ? 'payout.settled' : 'payout.failed', p, at);
    }
    const d = resource.object;
    d.updated_at = at;
    if (outcome === 'settle') {
      d.status = 'succeeded';
      d.succeeded_at = at;
    } else {
      d.status = 'failed';
      d.failed_at = at;
      d.failure_code = failureCode;
    }
    this.opts.logger.info({ deposit_id: d.id, reference: d.reference, status: d.status, failure_code: d.failure_code }, 'sandbox deposit final');
    return this.event(outcome === 'settle' ? 'deposit.succeeded' : 'deposit.failed', d, at);
  }

  private returnPayout(payout: Payout, reason: string): WebhookEvent {
    const at = this.nowIso();
    payout.status = 'returned';
    payout.returned_at = at;
    payout.return_reason = reason;
    payout.updated_at = at;
    this.opts.logger.info({ payout_id: payout.id, reference: payout.reference, return_reason: reason }, 'sandbox payout returned');
    return this.event('payout.returned', payout, at);
  }

  /** succeeded → reversed, the full amount (changes the object; the caller stores it); returns the event announcing it. */
  private chargeBack(deposit: Deposit, reason: string): WebhookEvent {
    const at = this.nowIso();
    deposit.status = 'reversed';
    deposit.reversed_at = at;
    deposit.reversal_reason = reason;
    deposit.updated_at = at;
    this.opts.logger.info({ deposit_id: deposit.id, reference: deposit.reference, amount: deposit.amount, reversal_reason: reason }, 'sandbox deposit reversed');
    return this.event('deposit.reversed', deposit, at);
  }

  private event(type: WebhookEventType, object: Payout | Deposit, createdAt: string): WebhookEvent {
    return { id: randomId('evt'), type, created_at: createdAt, data: { object: snapshot(object) } };
  }

  private nowIso(): string {
    return this.opts.now().toISOString();
  }
}
