import { inTransaction, type Pool } from '../../../lib/db';
import type { DestinationKeyRing } from '../../../lib/destination-vault';
import { urlOrigin } from '../../../lib/outbox-webhooks';
import { DEFAULT_PREVIOUS_SECRET_OVERLAP_MS, endpointRows, putEndpoint, rotateSecret, type EndpointRow } from '../../outbox-publisher/endpoints';
import { endpointDeliveryStats, listDeadLetters, replayDeadLetters, skipDeadLetter, type DeadLetter, type DeadLetterFilter } from '../../outbox-publisher/store';
import { ProblemError } from '../common/problem';
import { appendAudit, audited } from './ops.stores';

/** An endpoint as staff see it: never its secret, only fingerprints that tell secrets apart. */
export interface EndpointView {
  id: string;
  url: string;
  enabled: boolean;
  event_types: string[];
  source: 'config' | 'api';
  secret: { fingerprint: string; rotated_at: string | null; previous: { fingerprint: string; until: string; active: boolean } | null } | null;
  changed_by: string | null;
  change_reason: string | null;
  created_at: string;
  updated_at: string;
  pending: number;
  dead_letters: number;
  held_events: number;
}

export interface DeadLetterView {
  endpoint: string;
  event_seq: number;
  event_id: string;
  event_type: string;
  account_id: string;
  attempts: number;
  last_error: string | null;
  first_failed_at: string | null;
  dead_at: string;
  state: DeadLetter['state'];
  resolved_at: string | null;
  resolved_by: string | null;
  resolution_reason: string | null;
  held_events: number;
}

function deadLetterView(d: DeadLetter): DeadLetterView {
  return {
    endpoint: d.endpoint,
    event_seq: d.eventSeq,
    event_id: d.eventId,
    event_type: d.eventType,
    account_id: d.accountId,
    attempts: d.attempts,
    last_error: d.lastError,
    first_failed_at: d.firstFailedAt,
    dead_at: d.deadAt,
    state: d.state,
    resolved_at: d.resolvedAt,
    resolved_by: d.resolvedBy,
    resolution_reason: d.resolutionReason,
    held_events: d.heldEvents,
  };
}

export interface EndpointInput {
  url: string;
  event_types: string[];
  enabled: boolean;
  from: 'beginning' | 'now';
  reason: string;
}

/**
 * Staff management of the outbox: endpoints (created with a generated secret shown once, changed, secret
 * rotated) and dead letters (replayed, or skipped with a reason). Every change is audited; a change and its
 * `applied` entry commit together, a refusal is audited by audited().
 */
export class OutboxOps {
  constructor(
    private readonly pool: Pool,
    private readonly ring: DestinationKeyRing,
  ) {}

  async endpoints(): Promise<EndpointView[]> {
    return this.views(await endpointRows(this.pool));
  }

  async endpoint(id: string): Promise<EndpointView> {
    const [view] = await this.views(await endpointRows(this.pool, { id }));
    if (!view) throw new ProblemError('NOT_FOUND', `No outbox endpoint ${id}`);
    return view;
  }

  async putEndpoint(id: string, input: EndpointInput, actor: string): Promise<{ endpoint: EndpointView; created: boolean; secret?: string }> {
    // The URL's origin only: a URL may carry a token.
    const entry = { actor, action: 'outbox:endpoint_put', target: `outbox-endpoint:${id}`, reason: input.reason, request: { ...input, url: urlOrigin(input.url) } };
    const done = await audited(this.pool, entry, async () => {
      const result = await inTransaction(this.pool, async (db) => {
        const [before] = await endpointRows(db, { id });
        if (before && input.enabled && before.secret_sealed === null) {
          throw new ProblemError('OUTBOX_ENDPOINT_NO_SECRET', `Outbox endpoint ${id} was served before endpoints had secrets; rotate its secret, then enable it`);
        }
        const put = await putEndpoint(db, this.ring, id, { url: input.url, eventTypes: input.event_types, enabled: input.enabled, from: input.from }, actor, input.reason);
        const detail = put.created
          ? `endpoint ${id} created (${input.enabled ? 'enabled' : 'disabled'}, events ${input.event_types.join(', ') || 'all'}, from ${input.from}); secret generated`
          : `endpoint ${id} changed: ${describeChange(before!, input)}`;
        await appendAudit(db, { ...entry, outcome: 'applied', detail });
        return put;
      });
      return { result };
    });
    return { endpoint: await this.endpoint(id), created: done.created, ...(done.secret ? { secret: done.secret } : {}) };
  }

  async rotateSecret(id: string, input: { reason: string; keep_previous_until?: string }, actor: string): Promise<{ endpoint: EndpointView; secret: string }> {
    const entry = { actor, action: 'outbox:rotate_secret', target: `outbox-endpoint:${id}`, reason: input.reason, request: input };
    const until = input.keep_previous_until ? new Date(input.keep_previous_until) : new Date(Date.now() + DEFAULT_PREVIOUS_SECRET_OVERLAP_MS);
    const secret = await audited(this.pool, entry, async () => {
      const result = await inTransaction(this.pool, async (db) => {
        const generated = await rotateSecret(db, this.ring, id, until, actor, input.reason);
        if (generated === undefined) throw new ProblemError('NOT_FOUND', `No outbox endpoint ${id}`);
        const [row] = await endpointRows(db, { id });
        await appendAudit(db, { ...entry, outcome: 'applied', detail: `new secret ${row!.secret_fingerprint}; previous ${row!.previous_fingerprint ?? 'none'} signs too until ${row!.previous_until?.toISOString() ?? '-'}` });
        return generated;
      });
      return { result };
    });
    return { endpoint: await this.endpoint(id), secret };
  }

  async deadLetters(filter: DeadLetterFilter): Promise<DeadLetterView[]> {
    return (await listDeadLetters(this.pool, filter)).map(deadLetterView);
  }

  /** Delivers the dead letter again; the account's later events follow once it is delivered. */
  async replay(endpoint: string, eventSeq: number, reason: string, actor: string): Promise<DeadLetterView> {
    return this.resolve('replay', endpoint, eventSeq, reason, actor);
  }

  /** Gives the dead letter up for good; the account's later events go on. */
  async skip(endpoint: string, eventSeq: number, reason: string, actor: string): Promise<DeadLetterView> {
    return this.resolve('skip', endpoint, eventSeq, reason, actor);
  }

  private async resolve(action: 'replay' | 'skip', endpoint: string, eventSeq: number, reason: string, actor: string): Promise<DeadLetterView> {
    const entry = { actor, action: `outbox:${action}`, target: `outbox-dead-letter:${endpoint}:${eventSeq}`, reason, request: { endpoint, event_seq: eventSeq } };
    return audited(this.pool, entry, async () => {
      const result = await inTransaction(this.pool, async (db) => {
        const by = { actor, reason };
        const done = action === 'replay' ? (await replayDeadLetters(db, { endpoint, eventSeq }, by)).find((d) => d.endpoint === endpoint) : await skipDeadLetter(db, endpoint, eventSeq, by);
        if (!done) {
          const [known] = await listDeadLetters(db, { endpoint, eventSeq, state: 'all' });
          if (known) throw new ProblemError('DEAD_LETTER_RESOLVED', `The dead letter ${endpoint}/${eventSeq} was ${known.state} by ${known.resolvedBy ?? 'someone'} at ${known.resolvedAt}`);
          throw new ProblemError('NOT_FOUND', `No dead letter ${eventSeq} at outbox endpoint ${endpoint}`);
        }
        const [after] = await listDeadLetters(db, { endpoint, eventSeq, state: 'all' });
        await appendAudit(db, {
          ...entry,
          outcome: 'applied',
          detail: `${action === 'replay' ? 'replayed' : 'skipped'} event ${done.eventId} (${done.eventType}) of account ${done.accountId} after ${done.attempts} attempt(s): ${done.lastError ?? ''}`,
        });
        return deadLetterView(after!);
      });
      return { result };
    });
  }

  private async views(rows: EndpointRow[]): Promise<EndpointView[]> {
    const stats = await endpointDeliveryStats(this.pool, rows.map((r) => r.endpoint));
    return rows.map((r) => ({
      id: r.name,
      url: r.url,
      enabled: r.enabled,
      event_types: r.event_types,
      source: r.source,
      secret: r.secret_fingerprint
        ? {
            fingerprint: r.secret_fingerprint,
            rotated_at: r.secret_rotated_at?.toISOString() ?? null,
            previous: r.previous_fingerprint ? { fingerprint: r.previous_fingerprint, until: r.previous_until!.toISOString(), active: r.previous_live } : null,
          }
        : null,
      changed_by: r.changed_by,
      change_reason: r.change_reason,
      created_at: r.created_at.toISOString(),
      updated_at: r.updated_at.toISOString(),
      ...(stats.get(r.endpoint) ?? { pending: 0, dead_letters: 0, held_events: 0 }),
    }));
  }
}

function describeChange(before: EndpointRow, input: EndpointInput): string {
  const changes: string[] = [];
  if (before.url !== input.url) changes.push('url');
  if (before.enabled !== input.enabled) changes.push(input.enabled ? 'enabled' : 'disabled');
  if (before.event_types.join(',') !== input.event_types.join(',')) changes.push(`events ${input.event_types.join(', ') || 'all'}`);
  return changes.join('; ') || 'nothing';
}
