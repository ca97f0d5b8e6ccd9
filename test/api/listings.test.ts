import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { signToken } from '../../lib/tokens';
import { uniqueId } from '../support';
import { depositRequest, payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

/**
 * The listings people need, on the real stack (API, worker, sandbox, PostgreSQL, Temporal): a player's payout
 * and deposit history (cursor pages), its account statement (ledger movements with running balances) and the
 * staff list of closed payouts from the read model.
 */
describe('listings: history, statement, staff list of closed payouts', () => {
  let stack: SagaStack;
  let staff: string;
  beforeAll(async () => {
    stack = await startSagaStack();
    staff = `Bearer ${await signToken({ sub: 'finance-1', role: 'staff' }, stack.config.AUTH_JWT_SECRET)}`;
  });
  afterAll(async () => {
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  async function get(path: string, authorization = stack.service): Promise<{ status: number; contentType: string | null; body: any }> {
    const res = await fetch(`${stack.apiUrl}${path}`, { headers: { authorization } });
    return { status: res.status, contentType: res.headers.get('content-type'), body: await res.json() };
  }

  /** Every page of a listing, following next_cursor; `between` runs after each page but the last. */
  async function allPages(path: string, authorization: string, between: (pageIndex: number) => Promise<void> = async () => undefined) {
    const pages: any[][] = [];
    let cursor: string | null = null;
    do {
      const separator = path.includes('?') ? '&' : '?';
      const res = await get(`${path}${cursor ? `${separator}cursor=${cursor}` : ''}`, authorization);
      expect(res.status, JSON.stringify(res.body)).toBe(200);
      pages.push(res.body.items);
      cursor = res.body.next_cursor;
      if (cursor) await between(pages.length - 1);
    } while (cursor);
    return pages;
  }

  async function payout(accountId: string, minor: number, wallet = 'wallet-0001') {
    const res = await stack.postPayout(payoutRequest(accountId, minor, wallet), uniqueId('key'));
    expect([201, 422]).toContain(res.status);
    return res.json as { payout_id: string; status: string };
  }

  it('pages a player\'s payouts newest first with no duplicate and no gap, while new payouts arrive', async () => {
    const accountId = await stack.fundedAccount(1_000_000);
    const player = await stack.playerAuth(accountId);
    // 12 payouts, a few at once (requested_at may tie to the millisecond: payout_id breaks the tie).
    const before: string[] = [];
    for (let round = 0; round < 3; round++) {
      before.push(...(await Promise.all(Array.from({ length: 4 }, () => payout(accountId, 100 + round)))).map((p) => p.payout_id));
    }
    const arrivedWhilePaging: string[] = [];
    const pages = await allPages(`/v1/accounts/${accountId}/payouts?limit=5`, player, async () => {
      arrivedWhilePaging.push((await payout(accountId, 7)).payout_id);
    });
    expect(pages.map((p) => p.length)).toEqual([5, 5, 2]);
    const listed = pages.flat().map((item) => item.payout_id);
    // Each payout present from the start exactly once; those that arrived later are above the first page.
    expect(new Set(listed).size).toBe(listed.length);
    expect([...listed].sort()).toEqual([...before].sort());
    expect(arrivedWhilePaging).toHaveLength(2);
    // Newest first by (requested_at, payout_id).
    const order = pages.flat().map((item) => [item.requested_at, item.payout_id].join(' '));
    expect(order).toEqual([...order].sort().reverse());

    // A fresh first page starts with what arrived meanwhile.
    const fresh = await get(`/v1/accounts/${accountId}/payouts?limit=2`, player);
    expect(fresh.body.items.map((item: any) => item.payout_id).sort()).toEqual([...arrivedWhilePaging].sort());

    // A player's item has the public fields of GET /v1/payouts/{id} for that player: no staff text anywhere.
    const item = pages[0]![0]!;
    expect(item).toMatchObject({ account_id: accountId, amount: { currency: 'EUR' }, destination: { method: 'ewallet', last4: '0001' }, provider: 'sandbox' });
    expect(JSON.stringify(pages)).not.toMatch(/staff_note|staffNote|read_model|timeline/);
    const single = await stack.getPayout(item.payout_id, player);
    expect(Object.keys(item).filter((key) => key !== 'updated_at' && !(key in single))).toEqual([]);
  });

  it('filters a player\'s payouts by status and by a requested_at range, and refuses bad limits and cursors', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const settled = await payout(accountId, 300);
    await stack.waitForStatus(settled.payout_id, ['SETTLED']);
    const failed = await payout(accountId, 200, 'sandbox:fail');
    await stack.waitForStatus(failed.payout_id, ['FAILED']);
    const declined = await payout(accountId, 5_000);
    expect(declined).toMatchObject({ code: 'INSUFFICIENT_FUNDS' });

    const ids = async (query: string) => (await get(`/v1/accounts/${accountId}/payouts?${query}`)).body.items.map((item: any) => item.payout_id);
    expect(await ids('status=SETTLED')).toEqual([settled.payout_id]);
    expect(await ids('status=FAILED,DECLINED')).toEqual([(declined as any).payout_id, failed.payout_id]);
    const all = (await get(`/v1/accounts/${accountId}/payouts`)).body.items;
    expect(all.map((item: any) => item.status)).toEqual(['DECLINED', 'FAILED', 'SETTLED']);
    expect(all[0]).toMatchObject({ decline_code: 'INSUFFICIENT_FUNDS' });
    // from inclusive, to exclusive, on requested_at.
    const middle = all[1].requested_at;
    expect(await ids(`from=${encodeURIComponent(middle)}`)).toEqual([(declined as any).payout_id, failed.payout_id]);
    expect(await ids(`to=${encodeURIComponent(middle)}`)).toEqual([settled.payout_id]);

    for (const query of ['limit=0', 'limit=101', 'status=PAID', 'from=yesterday', 'cursor=not-a-cursor', 'colour=red']) {
      const res = await get(`/v1/accounts/${accountId}/payouts?${query}`);
      expect(res.status, query).toBe(400);
      expect(res.body.code, query).toBe('VALIDATION_FAILED');
    }
    // A cursor of another listing (or another account's) is refused, not misread.
    const other = await stack.fundedAccount(1_000);
    await payout(other, 10);
    await payout(other, 11);
    const otherPage = await get(`/v1/accounts/${other}/payouts?limit=1`);
    expect(otherPage.body.next_cursor).toEqual(expect.any(String));
    for (const path of [`/v1/accounts/${accountId}/payouts`, `/v1/accounts/${other}/deposits`, `/v1/accounts/${other}/statement`]) {
      const res = await get(`${path}?cursor=${otherPage.body.next_cursor}`);
      expect(res.status, path).toBe(400);
      expect(res.body.errors, path).toEqual([{ path: 'query.cursor', message: expect.any(String) }]);
    }
  });

  it('pages deposits whose requested_at tie to the microsecond by deposit_id, filtered by status', async () => {
    // Ties cannot be produced on demand through the API: the read-model rows are written as the saga writes
    // them, 9 at one instant and 3 at another, in inert states (FAILED, REVERSED: no saga acts on them).
    const accountId = await stack.fundedAccount(0);
    const at = '2026-01-02T03:04:05.123456Z';
    const prefix = randomBytes(12).toString('hex');
    const ids = Array.from({ length: 12 }, (_, i) => `dp_${prefix}${i.toString(16).padStart(8, '0')}`);
    for (const [i, id] of ids.entries()) {
      await stack.pool.query(
        `INSERT INTO deposits (deposit_id, account_id, amount_minor, currency, provider, status, version, requested_at) VALUES ($1, $2, $3, 'EUR', 'sandbox', $4, 9, $5)`,
        [id, accountId, 100 + i, i % 3 === 0 ? 'REVERSED' : 'FAILED', i < 9 ? at : '2026-01-02T03:04:05.123457Z'],
      );
    }
    const player = await stack.playerAuth(accountId);
    const pages = await allPages(`/v1/accounts/${accountId}/deposits?limit=4`, player);
    expect(pages.map((p) => p.length)).toEqual([4, 4, 4]);
    const listed = pages.flat().map((item) => item.deposit_id);
    // The later instant first, then the tie by deposit_id descending: each once.
    expect(listed).toEqual([...ids.slice(9).reverse(), ...ids.slice(0, 9).reverse()]);
    const reversed = await allPages(`/v1/accounts/${accountId}/deposits?limit=2&status=REVERSED`, player);
    expect(reversed.flat().map((item) => item.deposit_id)).toEqual(ids.filter((_, i) => i % 3 === 0).reverse());
    expect(pages[0]![0]).toMatchObject({ account_id: accountId, amount: { minor_units: 111, currency: 'EUR' }, status: 'FAILED', requested_at: '2026-01-02T03:04:05.123Z' });
  });

  it('a player is refused another account\'s history and statement (403 problem); an unknown account is 404', async () => {
    const mine = await stack.fundedAccount(100);
    const theirs = await stack.fundedAccount(100);
    const player = await stack.playerAuth(mine);
    for (const listing of ['payouts', 'deposits', 'statement']) {
      const own = await get(`/v1/accounts/${mine}/${listing}`, player);
      expect(own.status, listing).toBe(200);
      const res = await get(`/v1/accounts/${theirs}/${listing}`, player);
      expect(res.status, listing).toBe(403);
      expect(res.contentType).toMatch(/^application\/problem\+json/);
      expect(res.body).toMatchObject({ code: 'FORBIDDEN', status: 403 });
      expect((await get(`/v1/accounts/${uniqueId('nobody')}/${listing}`)).body.code, listing).toBe('ACCOUNT_NOT_FOUND');
    }
  });

  /** The balance after each transfer, recomputed here from the raw ledger rows (oldest first). */
  async function recompute(accountId: string) {
    const { rows } = await stack.pool.query<{ id: number; kind: string; amount: number; debit_account_id: string; credit_account_id: string; hold_amount: number | null }>(
      `SELECT t.id, t.kind, t.amount, t.debit_account_id, t.credit_account_id, h.amount AS hold_amount
         FROM ledger_transfers t LEFT JOIN ledger_transfers h ON h.id = t.pending_id
        WHERE $1 IN (t.debit_account_id, t.credit_account_id) ORDER BY t.id`,
      [accountId],
    );
    let posted = 0;
    let held = 0;
    return rows.map((t) => {
      const sign = t.credit_account_id === accountId ? 1 : -1;
      if (t.kind === 'hold' && sign < 0) held += t.amount;
      if (t.kind === 'void' && sign < 0) held -= t.amount;
      if (t.kind === 'post' && sign < 0) held -= t.hold_amount!;
      if (['transfer', 'post', 'refund'].includes(t.kind)) posted += sign * t.amount;
      return { transfer_id: t.id, balance_after: { available: posted - held, held, posted } };
    });
  }

  it('a statement\'s running balances equal a recomputation from the ledger, on every page, and end at the account\'s balance', async () => {
    const accountId = await stack.fundedAccount(0);
    const player = await stack.playerAuth(accountId);
    const deposit1 = await stack.postDeposit(depositRequest(accountId, 10_000), uniqueId('dep'));
    await stack.waitForDepositStatus(deposit1.json.deposit_id, ['CREDITED']);
    const settled = await payout(accountId, 2_500);
    await stack.waitForStatus(settled.payout_id, ['SETTLED']);
    const declined = (await payout(accountId, 50_000)) as any;
    expect(declined.code).toBe('INSUFFICIENT_FUNDS');
    const voided = await payout(accountId, 1_500, 'sandbox:fail');
    await stack.waitForStatus(voided.payout_id, ['FAILED']);
    const returned = await payout(accountId, 1_000, 'sandbox:return_after_settlement');
    await stack.waitForStatus(returned.payout_id, ['RETURNED']);
    const deposit2 = await stack.postDeposit(depositRequest(accountId, 700), uniqueId('dep'));
    await stack.waitForDepositStatus(deposit2.json.deposit_id, ['CREDITED']);
    // A hold settled for less than it held (the rest released), straight through the ledger: no saga does that yet.
    const funding = await stack.ledger.ensureSystemAccount('operator_funding', 'EUR');
    const partial = await stack.ledger.hold({ idempotencyKey: uniqueId('partial-hold'), debitAccountId: accountId, creditAccountId: funding.id, amount: 300, currency: 'EUR' });
    expect(partial.result).toBe('ok');
    const partialPost = await stack.ledger.post({ idempotencyKey: uniqueId('partial-post'), pendingId: (partial as any).transfer.id, amount: 200 });
    expect(partialPost.result).toBe('ok');
    // Still held: its provider never answers (the hold stays pending).
    const pending = await payout(accountId, 400, 'sandbox:stay_pending');
    await stack.waitForStatus(pending.payout_id, ['SUBMITTED']);

    const pages = await allPages(`/v1/accounts/${accountId}/statement?currency=EUR&limit=3`, player);
    expect(pages.length).toBeGreaterThan(2);
    const entries = pages.flat();
    const expected = await recompute(accountId);
    expect(entries.map((e) => ({ transfer_id: e.transfer_id, balance_after: e.balance_after }))).toEqual(expected);
    // Each entry's change is what moved its balance from the one before.
    let previous = { available: 0, held: 0, posted: 0 };
    for (const entry of entries) {
      expect(entry.amount.minor_units).toBe(entry.balance_after.available - previous.available);
      expect(entry.posted_change).toBe(entry.balance_after.posted - previous.posted);
      expect(entry.held_change).toBe(entry.balance_after.held - previous.held);
      expect(entry.amount.currency).toBe('EUR');
      previous = entry.balance_after;
    }
    const balance = (await stack.ledger.getBalance(accountId))!;
    expect(entries.at(-1).balance_after).toEqual({ available: balance.available, held: balance.held, posted: balance.posted });
    expect(balance).toMatchObject({ available: 10_000 - 2_500 + 700 - 200 - 400, held: 400, posted: 10_000 - 2_500 + 700 - 200 });
    const last = await get(`/v1/accounts/${accountId}/statement`, player);
    expect(last.body.balance).toEqual(entries.at(-1).balance_after);

    expect(entries.map((e) => [e.kind, e.payout_id ?? e.deposit_id, e.amount.minor_units])).toEqual([
      ['deposit', deposit1.json.deposit_id, 10_000],
      ['payout_hold', settled.payout_id, -2_500],
      ['payout_settled', settled.payout_id, 0],
      ['payout_hold', voided.payout_id, -1_500],
      ['payout_released', voided.payout_id, 1_500],
      ['payout_hold', returned.payout_id, -1_000],
      ['payout_settled', returned.payout_id, 0],
      ['payout_refunded', returned.payout_id, 1_000],
      ['deposit', deposit2.json.deposit_id, 700],
      ['transfer', undefined, -300],
      ['transfer', undefined, 100],
      ['payout_hold', pending.payout_id, -400],
    ]);
    expect(entries.at(-2)).toMatchObject({ posted_change: -200, held_change: -300 });
    expect(entries.find((e) => e.kind === 'payout_settled')).toMatchObject({ posted_change: -2_500, held_change: -2_500 });

    // A range keeps the balances of the whole history: the entries from the second deposit on, as listed before.
    const from = entries.find((e) => e.deposit_id === deposit2.json.deposit_id).at;
    const ranged = await get(`/v1/accounts/${accountId}/statement?from=${encodeURIComponent(from)}`, player);
    expect(ranged.body.items).toEqual(entries.filter((e) => e.at >= from));
    expect((await get(`/v1/accounts/${accountId}/statement?currency=USD`, player)).body.code).toBe('CURRENCY_MISMATCH');
  });

  it('staff list closed payouts from the read model, filtered by status, account and provider, a page at a time', async () => {
    const accountId = await stack.fundedAccount(10_000);
    const settled = await payout(accountId, 1_000);
    const failed = await payout(accountId, 1_000, 'sandbox:fail');
    const declined = (await payout(accountId, 99_999)) as any;
    await stack.waitForStatus(settled.payout_id, ['SETTLED']);
    await stack.waitForStatus(failed.payout_id, ['FAILED']);

    // The settled saga has ended (its return window is 1.5 s here): only the read model still lists it.
    await stack.temporal.workflow.getHandle(settled.payout_id).result();
    expect((await get('/v1/ops/payouts?stuck=true', staff)).body).toMatchObject({ source: 'visibility', query: expect.stringContaining("ExecutionStatus = 'Running'"), next_cursor: null });

    const closed = await get(`/v1/ops/payouts?status=SETTLED&account=${accountId}`, staff);
    expect(closed.status).toBe(200);
    expect(closed.body).toMatchObject({ source: 'read_model', next_cursor: null });
    expect(closed.body.items).toEqual([
      expect.objectContaining({ payout_id: settled.payout_id, account_id: accountId, status: 'SETTLED', provider: 'sandbox', amount_minor: 1_000, currency: 'EUR', stuck: false, workflow_task_failing: false }),
    ]);
    // A status list of closed states alone reads the read model by default.
    const failures = await get(`/v1/ops/payouts?status=DECLINED,FAILED&account=${accountId}&provider=sandbox`, staff);
    expect(failures.body.items.map((item: any) => [item.payout_id, item.status])).toEqual([
      [declined.payout_id, 'DECLINED'],
      [failed.payout_id, 'FAILED'],
    ]);
    expect(failures.body.items[0]).toMatchObject({ decline_code: 'INSUFFICIENT_FUNDS' });
    expect(failures.body.items[1]).toMatchObject({ failure_code: 'account_closed' });
    expect((await get(`/v1/ops/payouts?status=DECLINED&account=${accountId}&provider=sandbox-b`, staff)).body.items).toEqual([]);

    // Across accounts, newest first: page by page with the cursor, nothing twice.
    const from = encodeURIComponent(closed.body.items[0].started_at);
    const to = encodeURIComponent(new Date().toISOString());
    const pages = await allPages(`/v1/ops/payouts?status=SETTLED,FAILED,DECLINED&from=${from}&to=${to}&limit=2`, staff);
    const listed = pages.flat().map((item) => item.payout_id);
    expect(new Set(listed).size).toBe(listed.length);
    expect(listed).toEqual(expect.arrayContaining([settled.payout_id, failed.payout_id, declined.payout_id]));

    const asPlayer = await get(`/v1/ops/payouts?status=SETTLED`, await stack.playerAuth(accountId));
    expect(asPlayer.status).toBe(403);
  });
});
