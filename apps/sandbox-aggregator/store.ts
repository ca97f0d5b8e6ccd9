import { createHash } from 'node:crypto';
import type { Deposit, Payout } from './objects';
import type { Scenario } from './schemas';

/** In-memory state of the sandbox. It is a sandbox: a restart forgets everything, by design. */

class ResourceStore<T extends { id: string; reference: string }> {
  private readonly byId = new Map<string, T>();
  private readonly idByReference = new Map<string, string>();

  get(id: string): T | undefined {
    return this.byId.get(id);
  }

  findByReference(reference: string): T | undefined {
    const id = this.idByReference.get(reference);
    return id === undefined ? undefined : this.byId.get(id);
  }

  add(resource: T): void {
    this.byId.set(resource.id, resource);
    this.idByReference.set(resource.reference, resource.id);
  }

  all(): IterableIterator<T> {
    return this.byId.values();
  }
}

export interface StoredResponse {
  statusCode: number;
  body: unknown;
}

/** An answer and whether it is final for its idempotency key (transient errors are not: the retry must run again). */
export interface ProducedResponse extends StoredResponse {
  remember: boolean;
}

export type IdempotentResult = { outcome: 'mismatch' } | { outcome: 'fresh' | 'replayed'; response: StoredResponse };

interface IdempotencyEntry {
  fingerprint: string;
  response?: StoredResponse;
  /** Settles when the first request with this key has answered: its response, or undefined if not remembered. */
  pending: Promise<StoredResponse | undefined>;
}

/**
 * Idempotency-Key handling: the first request runs, later ones with the same key and the same body get
 * its answer (waiting for it if it is still running), ones with a different body are refused.
 */
export class IdempotencyStore {
  private readonly entries = new Map<string, IdempotencyEntry>();

  // Everything up to produce() runs synchronously, so concurrent duplicates cannot both find no entry.
  async execute(scopedKey: string, fingerprint: string, produce: () => Promise<ProducedResponse>): Promise<IdempotentResult> {
    const existing = this.entries.get(scopedKey);
    if (existing) {
      if (existing.fingerprint !== fingerprint) return { outcome: 'mismatch' };
      const response = existing.response ?? (await existing.pending);
      if (response) return { outcome: 'replayed', response };
      // The first request ended with a transient answer that binds nobody: run again, as that client's retry would.
      return this.execute(scopedKey, fingerprint, produce);
    }

    let settle!: (response: StoredResponse | undefined) => void;
    const entry: IdempotencyEntry = { fingerprint, pending: new Promise((resolve) => (settle = resolve)) };
    this.entries.set(scopedKey, entry);
    try {
      const { remember, ...response } = await produce();
      if (remember) entry.response = response;
      else this.entries.delete(scopedKey);
      settle(remember ? response : undefined);
      return { outcome: 'fresh', response };
    } catch (err) {
      this.entries.delete(scopedKey);
      settle(undefined);
      throw err;
    }
  }
}

/** A stable hash of a JSON value: key order does not matter, everything else does. */
export function fingerprintOf(value: unknown): string {
  return createHash('sha256').update(canonicalJson(value)).digest('hex');
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export class SandboxStore {
  readonly payouts = new ResourceStore<Payout>();
  readonly deposits = new ResourceStore<Deposit>();
  readonly idempotency = new IdempotencyStore();
  /** Scenarios registered through the control endpoint, by merchant reference. */
  readonly scenarios = new Map<string, Scenario>();
  /** error_then_ok: 503s already answered, per scoped idempotency key. */
  readonly transientFailures = new Map<string, number>();
  /** Per-deposit secret in its checkout_url: the page and its pay/decline action need it, not the API token. */
  readonly checkoutSecrets = new Map<string, string>();
}
