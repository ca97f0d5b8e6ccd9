import { z } from 'zod';
import type { Pool } from '../../../lib/db';

/**
 * The operator's own fields on a payout or deposit: `reference` (its id for the operation in its systems) and
 * `metadata` (string keys to string values, after Stripe's). Given on the POST, part of the request fingerprint
 * (same key, other metadata: IDEMPOTENCY_MISMATCH), stored in `operation_metadata`, returned with the
 * operation and echoed in its outbox events. They may hold personal data: they never enter the workflow
 * history and are never logged (lib/logger.ts redacts `metadata` as a last line; `reference` is not redacted there, since log lines use a `reference` field for payout ids, so no code logs the operator's reference).
 */
export const METADATA_MAX_KEYS = 20;
export const METADATA_KEY_PATTERN = /^[A-Za-z0-9_.:-]{1,40}$/;
export const METADATA_VALUE_MAX_CHARS = 500;
/** Serialized (JSON, UTF-8) size cap of the whole object: 20 values of 500 characters would be far more. */
export const METADATA_MAX_BYTES = 4096;
export const REFERENCE_MAX_CHARS = 128;

export type OperatorMetadata = Record<string, string>;

const INVALID = { problem: 'INVALID_METADATA' } as const;
/** C0 and C1 control characters (a NUL cannot even be stored in jsonb). */
const CONTROL = /\p{Cc}/u;
/** An unpaired UTF-16 surrogate: PostgreSQL refuses it in jsonb and text (String#isWellFormed is ES2024). */
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;
const wellFormed = (text: string) => !CONTROL.test(text) && !LONE_SURROGATE.test(text);

/**
 * Every refusal is a custom issue naming INVALID_METADATA, so parseOrProblem answers 422 when metadata or
 * reference is all that is wrong (with anything else wrong too: 400 VALIDATION_FAILED naming each problem).
 * The JSON schema (OpenAPI, the generated client) is given as meta: the checks below are what it says.
 */
export const metadataSchema = z
  .unknown()
  .superRefine((value, ctx) => {
    const issue = (message: string, path: string[] = []) => ctx.addIssue({ code: 'custom', message, path, params: INVALID });
    if (value === null || typeof value !== 'object' || Array.isArray(value)) return issue('metadata must be an object of string keys to string values');
    const entries = Object.entries(value);
    if (entries.length > METADATA_MAX_KEYS) issue(`metadata may have at most ${METADATA_MAX_KEYS} keys (got ${entries.length})`);
    for (const [key, item] of entries) {
      // Messages name the key and what is wrong, never the value (it may be personal data).
      if (!METADATA_KEY_PATTERN.test(key)) issue('a metadata key is 1-40 characters of A-Z a-z 0-9 _ . : -', [key.slice(0, 40)]);
      if (typeof item !== 'string') issue('a metadata value is a string', [key.slice(0, 40)]);
      else if (item.length > METADATA_VALUE_MAX_CHARS) issue(`a metadata value is at most ${METADATA_VALUE_MAX_CHARS} characters`, [key.slice(0, 40)]);
      else if (!wellFormed(item)) issue('a metadata value may not hold control characters or unpaired surrogates', [key.slice(0, 40)]);
    }
    if (Buffer.byteLength(JSON.stringify(value)) > METADATA_MAX_BYTES) issue(`metadata is at most ${METADATA_MAX_BYTES} bytes as JSON`);
  })
  .transform((value) => value as OperatorMetadata)
  .meta({
    type: 'object',
    maxProperties: METADATA_MAX_KEYS,
    propertyNames: { type: 'string', pattern: METADATA_KEY_PATTERN.source },
    additionalProperties: { type: 'string', maxLength: METADATA_VALUE_MAX_CHARS },
    description: `The operator's own data: at most ${METADATA_MAX_KEYS} keys (1-40 characters of A-Z a-z 0-9 _ . : -), string values of at most ${METADATA_VALUE_MAX_CHARS} characters, ${METADATA_MAX_BYTES} bytes in all as JSON. Returned to every reader of the operation (its player too) and echoed in its outbox events; never logged. Invalid: 422 INVALID_METADATA`,
  });

export const referenceSchema = z
  .unknown()
  .superRefine((value, ctx) => {
    const ok = typeof value === 'string' && value.length >= 1 && value.length <= REFERENCE_MAX_CHARS && wellFormed(value);
    if (!ok) ctx.addIssue({ code: 'custom', message: `reference is a string of 1-${REFERENCE_MAX_CHARS} characters without control characters`, params: INVALID });
  })
  .transform((value) => value as string)
  .meta({ type: 'string', minLength: 1, maxLength: REFERENCE_MAX_CHARS, description: "The operator's own reference for the operation (not unique: the Idempotency-Key is). Invalid: 422 INVALID_METADATA" });

/** The request fields, spread into a create body's strictObject. */
export const operatorFieldsInput = { reference: referenceSchema.optional(), metadata: metadataSchema.optional() };

/** The response fields: present when the request carried them. */
export const operatorFieldsBody = {
  reference: z.string().optional().describe("the operator's own reference, as given on creation"),
  metadata: z.record(z.string(), z.string()).optional().describe("the operator's metadata, as given on creation"),
};

export interface OperatorFields {
  reference?: string;
  metadata?: OperatorMetadata;
}

/** The fields of a request, for its answer (and the same shape as stored): only those it carried. */
export function operatorFieldsOf(request: OperatorFields): OperatorFields {
  return { ...(request.reference !== undefined ? { reference: request.reference } : {}), ...(request.metadata !== undefined ? { metadata: request.metadata } : {}) };
}

/**
 * Stores the fields of a claimed request before its saga starts; runs for every attempt of the key, and the
 * first write wins (every attempt of one key carries the same fields: they are in its fingerprint).
 */
export async function saveOperatorFields(pool: Pool, operation: 'payout' | 'deposit', resourceId: string, accountId: string, fields: OperatorFields): Promise<void> {
  if (fields.reference === undefined && fields.metadata === undefined) return;
  await pool.query(
    `INSERT INTO operation_metadata (resource_id, operation, account_id, reference, metadata) VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (resource_id) DO NOTHING`,
    [resourceId, operation, accountId, fields.reference ?? null, fields.metadata === undefined ? null : JSON.stringify(fields.metadata)],
  );
}

interface StoredRow {
  resource_id: string;
  reference: string | null;
  metadata: OperatorMetadata | null;
}

/** The stored fields of these operations, by id (absent: none given). */
export async function loadOperatorFields(pool: Pool, resourceIds: readonly string[]): Promise<Map<string, OperatorFields>> {
  if (resourceIds.length === 0) return new Map();
  const { rows } = await pool.query<StoredRow>('SELECT resource_id, reference, metadata FROM operation_metadata WHERE resource_id = ANY($1::text[])', [resourceIds]);
  return new Map(rows.map((row) => [row.resource_id, { ...(row.reference !== null ? { reference: row.reference } : {}), ...(row.metadata !== null ? { metadata: row.metadata } : {}) }]));
}

export async function loadOperatorFieldsOf(pool: Pool, resourceId: string): Promise<OperatorFields> {
  return (await loadOperatorFields(pool, [resourceId])).get(resourceId) ?? {};
}
