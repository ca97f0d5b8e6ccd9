import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { runner } from 'node-pg-migrate';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createProviderActivities } from '../../activities/provider';
import { repoRoot } from '../../lib/config';
import { createPool, type Pool } from '../../lib/db';
import { createDestinationVault, DestinationKeyRing, DestinationUnreadable, type StoredDestination } from '../../lib/destination-vault';
import { MIGRATIONS_DIR } from '../../lib/migrate';
import { scratchDatabase, startTestWorker, uniqueId, providerRegistry } from '../support';
import { startSagaStack, type SagaStack } from '../support/saga-stack';

const IBAN = 'GB82WEST12345698765432';
const CARD_TOKEN = 'tok_visa_4242_secret_9f8e7d';

const newKey = () => randomBytes(32).toString('base64');

/** Everything PostgreSQL holds of a destination row: its text form and its raw bytes. */
async function rawRow(pool: Pool, payoutId: string): Promise<{ text: string; bytes: Buffer; row: StoredDestination & { destination: unknown } }> {
  const { rows } = await pool.query('SELECT row_to_json(d)::text AS text, d.* FROM payout_destinations d WHERE payout_id = $1', [payoutId]);
  expect(rows).toHaveLength(1);
  const row = rows[0];
  return { text: row.text, bytes: Buffer.concat([row.ciphertext ?? Buffer.alloc(0), row.wrapped_key ?? Buffer.alloc(0)]), row };
}

function expectNoPlaintext(raw: { text: string; bytes: Buffer; row: { destination: unknown } }, secret: string) {
  expect(raw.row.destination).toBeNull();
  expect(raw.text).not.toContain(secret);
  expect(raw.bytes.includes(Buffer.from(secret, 'utf8'))).toBe(false);
  expect(raw.text).not.toContain(secret.slice(4, 12)); // not even a part of it
}

describe('payout destinations are encrypted at rest', () => {
  let stack: SagaStack;
  let worker: Awaited<ReturnType<typeof startTestWorker>>;
  let proxy: http.Server;
  let proxyUrl: string;
  /** Payout submissions as the aggregator received them. */
  const submissions: { reference: string; destination: Record<string, string> }[] = [];
  const payouts: Record<'iban' | 'card' | 'tampered' | 'moved', string> = { iban: '', card: '', tampered: '', moved: '' };

  async function post(destination: Record<string, string>): Promise<string> {
    const accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout({ account_id: accountId, amount: { minor_units: 100, currency: 'EUR' }, destination }, uniqueId('key'));
    expect(res.status).toBe(202); // no worker yet: the saga has not run
    return res.json.payout_id;
  }

  beforeAll(async () => {
    // No worker at first: the destination rows are written (by the API) and changed before any saga submits.
    stack = await startSagaStack({ SAGA_SYNC_DEADLINE_MS: '300' }, { worker: false });
    proxy = http.createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const body = Buffer.concat(chunks);
      if (req.method === 'POST' && req.url === '/v1/payouts') submissions.push(JSON.parse(body.toString('utf8')));
      const upstream = await fetch(`${stack.sandboxUrl}${req.url}`, { method: req.method, headers: req.headers as Record<string, string>, body: req.method === 'POST' ? body : undefined });
      res.writeHead(upstream.status, { 'content-type': 'application/json' }).end(await upstream.text());
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;

    payouts.iban = await post({ method: 'bank_transfer', iban: IBAN });
    payouts.card = await post({ method: 'card', token: CARD_TOKEN });
    payouts.tampered = await post({ method: 'bank_transfer', iban: 'DE89370400440532013000' });
    payouts.moved = await post({ method: 'ewallet', wallet_id: 'wallet-moved-0001' });

    // One flipped bit of ciphertext; and the IBAN payout's sealed row copied onto another payout.
    const tampered = (await rawRow(stack.pool, payouts.tampered)).row.ciphertext!;
    tampered[tampered.length - 1]! ^= 1;
    await stack.pool.query('UPDATE payout_destinations SET ciphertext = $2 WHERE payout_id = $1', [payouts.tampered, tampered]);
    await stack.pool.query(
      'UPDATE payout_destinations AS target SET method = source.method, key_id = source.key_id, wrapped_key = source.wrapped_key, ciphertext = source.ciphertext FROM payout_destinations AS source WHERE source.payout_id = $1 AND target.payout_id = $2',
      [payouts.iban, payouts.moved],
    );

    worker = await startTestWorker(stack.pool, stack.config.TEMPORAL_TASK_QUEUE, { ...stack.config, SANDBOX_URL: proxyUrl });
  });
  afterAll(async () => {
    await worker?.stop();
    proxy?.close();
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('stores no IBAN or card token in plain text: the row holds only ciphertext under the current key', async () => {
    for (const [payoutId, secret] of [[payouts.iban, IBAN], [payouts.card, CARD_TOKEN]] as const) {
      const raw = await rawRow(stack.pool, payoutId);
      expectNoPlaintext(raw, secret);
      expect(raw.row.key_id).toBe(stack.config.DESTINATION_KEYS.currentId);
      expect(raw.row.ciphertext!.length).toBeGreaterThan(28);
    }
    const anywhere = await stack.pool.query("SELECT count(*)::int AS n FROM payout_destinations d WHERE row_to_json(d)::text LIKE '%' || $1 || '%' OR position(convert_to($1, 'UTF8') in coalesce(ciphertext, '')) > 0", [IBAN]);
    expect(anywhere.rows[0].n).toBe(0);
  });

  it('the provider still receives the full destination', async () => {
    await stack.waitForStatus(payouts.iban, ['SETTLED']);
    await stack.waitForStatus(payouts.card, ['SETTLED']);
    expect(submissions.find((s) => s.reference === payouts.iban)?.destination).toEqual({ method: 'bank_transfer', iban: IBAN });
    expect(submissions.find((s) => s.reference === payouts.card)?.destination).toEqual({ method: 'card', token: CARD_TOKEN });
  });

  it('a changed ciphertext, or a row moved to another payout, does not decrypt: nothing is submitted and the hold is released', async () => {
    for (const payoutId of [payouts.tampered, payouts.moved]) {
      const failed = await stack.waitForStatus(payoutId, ['FAILED']);
      expect(failed.failure_code).toBe('destination_unreadable');
      expect(submissions.some((s) => s.reference === payoutId)).toBe(false);
      expect((await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).status).toBe(404);
      expect((await stack.transfersOf(payoutId)).map((t) => t.kind)).toEqual(['hold', 'void']);
      // The submission activity's failure says why, for staff (in the saga's history).
      const history = JSON.stringify(await stack.temporal.workflow.getHandle(payoutId).fetchHistory());
      expect(history).toContain('DestinationUndecryptable');
    }
  });
});

describe('destination key rotation and plaintext rows left from before encryption', () => {
  const oldRing = `old:${newKey()}`;
  const newCurrent = `new:${newKey()}`;
  let database: Awaited<ReturnType<typeof scratchDatabase>>;
  let databaseUrl: string;
  let pool: Pool;

  /** A script of this repository run as operators run it, against the private database. */
  function run(script: string, destinationKeys: string) {
    const result = spawnSync(process.execPath, ['--import', 'tsx', script], {
      cwd: repoRoot,
      env: { ...process.env, NODE_ENV: 'test', LOG_LEVEL: 'silent', DATABASE_URL: databaseUrl, DESTINATION_KEYS: destinationKeys },
      encoding: 'utf8',
      timeout: 60_000,
    });
    return { status: result.status, out: `${result.stdout}${result.stderr}` };
  }

  beforeAll(async () => {
    // A database of its own: the rewrap script works on the whole table, and other suites' rows are not its business.
    database = await scratchDatabase('vault');
    databaseUrl = database.url;
    // The schema as it was before encryption at rest (migrations up to 0009), with plaintext rows in it.
    await runner({ databaseUrl, dir: MIGRATIONS_DIR, direction: 'up', migrationsTable: 'pgmigrations', count: 9, checkOrder: true, singleTransaction: true, log: () => undefined });
    pool = createPool(databaseUrl, 4);
    await pool.query('INSERT INTO payout_destinations (payout_id, method, destination) VALUES ($1, $2, $3), ($4, $5, $6)', [
      'po_legacy_iban',
      'bank_transfer',
      JSON.stringify({ method: 'bank_transfer', iban: IBAN }),
      'po_legacy_card',
      'card',
      JSON.stringify({ method: 'card', token: CARD_TOKEN }),
    ]);
  });
  afterAll(async () => {
    await pool?.end();
    await database?.drop();
  });

  it('the migrate step applies the new migration and seals the plaintext rows', async () => {
    const migrated = run('scripts/migrate.ts', oldRing);
    expect(migrated.out).toContain('0010_sealed_payout_destinations');
    expect(migrated.out).toContain('sealed 2 payout destination(s)');
    expect(migrated.status).toBe(0);
    for (const [payoutId, secret] of [['po_legacy_iban', IBAN], ['po_legacy_card', CARD_TOKEN]] as const) {
      const raw = await rawRow(pool, payoutId);
      expectNoPlaintext(raw, secret);
      expect(raw.row.key_id).toBe('old');
    }
    expect(createDestinationVault(DestinationKeyRing.parse(oldRing)).open('po_legacy_iban', (await rawRow(pool, 'po_legacy_iban')).row)).toEqual({ method: 'bank_transfer', iban: IBAN });
    // The table accepts no row that is both sealed and in plain text.
    await expect(pool.query("UPDATE payout_destinations SET destination = '{}' WHERE payout_id = 'po_legacy_iban'")).rejects.toThrow(/payout_destinations_sealed/);
  });

  it('rows under the old key still open once a new key is current, in the submission activity too', async () => {
    const ring = DestinationKeyRing.parse(`${newCurrent},${oldRing}`);
    expect(createDestinationVault(ring).open('po_legacy_card', (await rawRow(pool, 'po_legacy_card')).row)).toEqual({ method: 'card', token: CARD_TOKEN });
    // The activity reads the row itself; a provider that answers 201 stands in for the aggregator.
    const received: unknown[] = [];
    const provider = http.createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      received.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(201, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'po_provider_1', status: 'pending' }));
    });
    await new Promise<void>((resolve) => provider.listen(0, '127.0.0.1', resolve));
    try {
      const activities = createProviderActivities({ providers: providerRegistry(pool, { sandbox: `http://127.0.0.1:${(provider.address() as { port: number }).port}` }), pool, destinations: createDestinationVault(ring) });
      await activities.submitPayoutToProvider({ payoutId: 'po_legacy_iban', amount: { minor_units: 100, currency: 'EUR' } });
    } finally {
      provider.close();
    }
    expect(received).toMatchObject([{ reference: 'po_legacy_iban', destination: { method: 'bank_transfer', iban: IBAN } }]);
  });

  it('the rewrap script moves every row to the new key without touching the ciphertext; then the old key can go', async () => {
    const before = await pool.query<{ payout_id: string; ciphertext: Buffer; wrapped_key: Buffer }>('SELECT payout_id, ciphertext, wrapped_key FROM payout_destinations ORDER BY payout_id');
    const rewrapped = run('scripts/destinations-rewrap.ts', `${newCurrent},${oldRing}`);
    expect(rewrapped.out).toContain('"rewrapped":2');
    expect(rewrapped.out).toContain('no row uses old any more');
    expect(rewrapped.status).toBe(0);
    const after = await pool.query<{ payout_id: string; key_id: string; ciphertext: Buffer; wrapped_key: Buffer }>('SELECT payout_id, key_id, ciphertext, wrapped_key FROM payout_destinations ORDER BY payout_id');
    expect(after.rows.map((r) => r.key_id)).toEqual(['new', 'new']);
    after.rows.forEach((row, i) => {
      expect(row.ciphertext.equals(before.rows[i]!.ciphertext)).toBe(true);
      expect(row.wrapped_key.equals(before.rows[i]!.wrapped_key)).toBe(false);
    });

    // The new key alone opens them; the old key alone no longer does.
    const newOnly = createDestinationVault(DestinationKeyRing.parse(newCurrent));
    expect(newOnly.open('po_legacy_iban', (await rawRow(pool, 'po_legacy_iban')).row)).toEqual({ method: 'bank_transfer', iban: IBAN });
    expect(() => createDestinationVault(DestinationKeyRing.parse(oldRing)).open('po_legacy_iban', after.rows.find((r) => r.payout_id === 'po_legacy_iban')!)).toThrow(DestinationUnreadable);

    // A ring that lost the key a row is sealed under is reported, not silently accepted.
    const lost = run('scripts/destinations-rewrap.ts', oldRing);
    expect(lost.status).toBe(1);
    expect(lost.out).toContain('2 destination(s) are sealed under key new, which DESTINATION_KEYS does not hold');
  });
});
