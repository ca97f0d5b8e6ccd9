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
import { failureCodeOf, finalOutcomeOf, returnReasonOf, supportsDeposits } from './scenarios';
import type { DepositRequest, PayoutRequest, ResolveDeposit, ResolvePayout, Scenario } from './schemas';
import type { Scheduler } from './scheduler';
import type { SandboxStore } from './store';
import type { WebhookDispatcher } from './webhooks';

export interface EngineOptions {
  store: SandboxStore;
  scheduler: Scheduler;
  webhooks: WebhookDispatcher;
  logger: Logger;
  now: () => Date;
  callbackDelayMs: number;
}

type Resource = { kind: 'payout'; object: Payout } | { kind: 'deposit'; object: Deposit };

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
}

/**
 * The aggregator's own lifecycle: creates payouts and deposits, plays each one's scenario on the scheduler,
 * and turns every status change into a webhook event (unless the scenario says to stay silent).
 */
export class SandboxEngine {
  constructor(private readonly opts: EngineOptions) {}

  createPayout(request: PayoutRequest, scenario: Scenario): Payout {
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
    this.opts.store.payouts.add(payout);
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
    );
    this.play({ kind: 'payout', object: payout }, scenario);
    return payout;
  }

  createDeposit(request: DepositRequest, scenario: Scenario, baseUrl: string): Deposit {
    const at = this.nowIso();
    const id = randomId('dp');
    const checkoutSecret = randomBytes(16).toString('hex');
    this.opts.store.checkoutSecrets.set(id, checkoutSecret);
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
    this.opts.store.deposits.add(deposit);
    this.opts.logger.info({ deposit_id: id, reference: deposit.reference, amount: deposit.amount, scenario: scenario.scenario }, 'sandbox deposit created');
    this.play({ kind: 'deposit', object: deposit }, scenario);
    return deposit;
  }

  /**
   * A scenario registered after submission re-scripts whatever is still pending under that reference.
   * Returns the ids it was applied to.
   */
  rescript(reference: string, scenario: Scenario): { applied: string[]; refused: { id: string; message: string }[] } {
    const applied: string[] = [];
    const refused: { id: string; message: string }[] = [];
    const candidates: Resource[] = [];
    const payout = this.opts.store.payouts.findByReference(reference);
    const deposit = this.opts.store.deposits.findByReference(reference);
    if (payout?.status === 'pending') candidates.push({ kind: 'payout', object: payout });
    if (deposit?.status === 'pending') candidates.push({ kind: 'deposit', object: deposit });
    for (const resource of candidates) {
      // Submission-time behaviours (reject, slow, error_then_ok) are past for an existing resource; their outcome is not.
      if (scenario.scenario === 'reject') refused.push({ id: resource.object.id, message: 'reject only applies to a submission' });
      else if (resource.kind === 'deposit' && !supportsDeposits(scenario)) refused.push({ id: resource.object.id, message: `${scenario.scenario} is for payouts only` });
      else {
        this.opts.scheduler.cancel(resource.object.id);
        this.play(resource, scenario);
        applied.push(resource.object.id);
      }
    }
    return { applied, refused };
  }

  resolvePayout(payout: Payout, command: ResolvePayout): TransitionResult<Payout> {
    const expected = command.outcome === 'return' ? 'settled' : 'pending';
    if (payout.status !== expected) {
      return { ok: false, object: snapshot(payout), message: `cannot ${command.outcome} a payout that is ${payout.status}` };
    }
    this.opts.scheduler.cancel(payout.id);
    const resource: Resource = { kind: 'payout', object: payout };
    const event =
      command.outcome === 'return'
        ? this.returnPayout(payout, command.return_reason ?? 'account_closed')
        : this.finish(resource, command.outcome, command.failure_code ?? failureCodeOf({ scenario: 'fail' }, 'payout'));
    if (command.send_webhook) this.opts.webhooks.send(event, payout.reference);
    return { ok: true, object: snapshot(payout) };
  }

  resolveDeposit(deposit: Deposit, command: ResolveDeposit): TransitionResult<Deposit> {
    if (deposit.status !== 'pending') return { ok: false, object: snapshot(deposit), message: `cannot resolve a deposit that is ${deposit.status}` };
    this.opts.scheduler.cancel(deposit.id);
    const outcome = command.outcome === 'succeed' ? 'settle' : 'fail';
    const event = this.finish({ kind: 'deposit', object: deposit }, outcome, command.failure_code ?? failureCodeOf({ scenario: 'fail' }, 'deposit'));
    if (command.send_webhook) this.opts.webhooks.send(event, deposit.reference);
    return { ok: true, object: snapshot(deposit) };
  }

  /** Everything whose final state (or return) falls in [since, until). */
  settlementReport(since: Date, until: Date): SettlementItem[] {
    const inWindow = (iso: string | undefined) => iso !== undefined && Date.parse(iso) >= since.getTime() && Date.parse(iso) < until.getTime();
    const items: SettlementItem[] = [];
    for (const p of this.opts.store.payouts.all()) {
      const finalAt = p.settled_at ?? p.failed_at;
      if (finalAt === undefined || !(inWindow(finalAt) || inWindow(p.returned_at))) continue;
      items.push({
        id: p.id,
        kind: 'payout',
        reference: p.reference,
        amount: { ...p.amount },
        status: p.status,
        settled_at: finalAt,
        ...(p.returned_at ? { returned_at: p.returned_at } : {}),
        ...(p.failure_code ? { failure_code: p.failure_code } : {}),
        ...(p.return_reason ? { return_reason: p.return_reason } : {}),
      });
    }
    for (const d of this.opts.store.deposits.all()) {
      const finalAt = d.succeeded_at ?? d.failed_at;
      if (finalAt === undefined || !inWindow(finalAt)) continue;
      items.push({
        id: d.id,
        kind: 'deposit',
        reference: d.reference,
        amount: { ...d.amount },
        status: d.status,
        settled_at: finalAt,
        ...(d.failure_code ? { failure_code: d.failure_code } : {}),
      });
    }
    return items.sort((a, b) => a.settled_at.localeCompare(b.settled_at) || a.id.localeCompare(b.id));
  }

  /** Schedules the scenario's outcome. Timers are owned by the resource id so they can be cancelled. */
  private play(resource: Resource, scenario: Scenario): void {
    const { scheduler, webhooks } = this.opts;
    const owner = resource.object.id;
    const reference = resource.object.reference;
    const delayMs = scenario.callback_delay_ms ?? this.opts.callbackDelayMs;
    const outcome = finalOutcomeOf(scenario);
    const failureCode = failureCodeOf(scenario, resource.kind);

    switch (scenario.scenario) {
      case 'stay_pending':
      case 'reject':
        return;
      case 'never_callback':
        // The status endpoint moves on; the platform only learns by polling.
        scheduler.after(delayMs, () => void this.finish(resource, outcome, failureCode), owner);
        return;
      case 'duplicate_callback':
        scheduler.after(
          delayMs,
          () => {
            const event = this.finish(resource, outcome, failureCode);
            const first = webhooks.send(event, reference);
            const second = webhooks.send(event, reference, { after: first });
            if (scenario.also_distinct_id) webhooks.send({ ...snapshot(event), id: randomId('evt') }, reference, { after: second });
          },
          owner,
        );
        return;
      case 'return_after_settlement':
      case 'out_of_order': {
        if (resource.kind !== 'payout') return; // refused at submission; kept total for the type checker
        const payout = resource.object;
        const returnDelayMs = scenario.return_delay_ms ?? this.opts.callbackDelayMs;
        const inOrder = scenario.scenario === 'return_after_settlement';
        scheduler.after(
          delayMs,
          () => {
            const settled = this.finish(resource, 'settle', failureCode);
            if (inOrder) webhooks.send(settled, reference);
            scheduler.after(
              returnDelayMs,
              () => {
                const returned = this.returnPayout(payout, returnReasonOf(scenario));
                const first = webhooks.send(returned, reference);
                // The later event arrives first; the older settled event (older created_at) follows it.
                if (!inOrder) webhooks.send(settled, reference, { after: first });
              },
              owner,
            );
          },
          owner,
        );
        return;
      }
      case 'settle':
      case 'fail':
      case 'slow':
      case 'error_then_ok':
        scheduler.after(
          delayMs,
          () => {
            webhooks.send(this.finish(resource, outcome, failureCode), reference);
          },
          owner,
        );
        return;
    }
  }

  /** pending → final; returns the event announcing it (sending it is the caller's choice). */
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

  private event(type: WebhookEventType, object: Payout | Deposit, createdAt: string): WebhookEvent {
    return { id: randomId('evt'), type, created_at: createdAt, data: { object: snapshot(object) } };
  }

  private nowIso(): string {
    return this.opts.now().toISOString();
  }
}
