import { WorkflowNotFoundError } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { isValidIban } from '../../lib/iban';
import { uniqueId } from '../support';
import { startSagaStack, type SagaStack } from '../support/saga-stack';

/**
 * Each of these has a correct mod-97 checksum, so the old check accepted (and paid) it; each breaks its
 * country's length or BBAN format, or names no country.
 */
const MOD97_ONLY: [string, string][] = [
  ['German IBAN one digit short', 'DE5137040044053201300'],
  ['German IBAN one digit long', 'DE543704004405320130001'],
  ['country XX', 'XX46370400440532013000'],
  ['GB IBAN with digits where the bank code letters go', 'GB25123412345698765432'],
  ['GB IBAN one digit short', 'GB88WEST1234569876543'],
];

/** Real valid IBANs (ibantools' and the IBAN registry's examples) of several countries. */
const VALID: string[] = [
  'DE89370400440532013000',
  'GB82WEST12345698765432',
  'NL91ABNA0417164300',
  'FR1420041010050500013M02606',
  'CH9300762011623852957',
  'BE68539007547034',
  'ES9121000418450200051332',
  'IT60X0542811101000000123456',
  'NO9386011117947',
];

describe('IBAN check: country, length and BBAN format, not only mod-97', () => {
  it('lib/iban accepts the valid ones, the print format and lower case, and refuses the rest', () => {
    for (const iban of VALID) expect(isValidIban(iban), iban).toBe(true);
    expect(isValidIban('de89 3704 0044 0532 0130 00')).toBe(true);
    for (const [name, iban] of MOD97_ONLY) expect(isValidIban(iban), name).toBe(false);
    // Only grouping spaces are forgiven.
    expect(isValidIban('DE89-3704-0044-0532-0130-00')).toBe(false);
    expect(isValidIban('DE89\t370400440532013000')).toBe(false);
  });

  describe('through the API', () => {
    let stack: SagaStack;
    beforeAll(async () => {
      stack = await startSagaStack();
    });
    afterAll(async () => {
      await stack?.assertLedgerClean();
      await stack?.close();
    });

    const bankTransfer = (accountId: string, iban: string) => ({ account_id: accountId, amount: { minor_units: 100, currency: 'EUR' }, destination: { method: 'bank_transfer', iban } });

    it.each(MOD97_ONLY)('%s (%s) is refused with 422 INVALID_DESTINATION and writes nothing', async (_name, iban) => {
      const accountId = await stack.fundedAccount(1_000);
      const key = uniqueId('iban');
      const res = await stack.postPayout(bankTransfer(accountId, iban), key);
      expect(res.status).toBe(422);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(res.json).toMatchObject({ code: 'INVALID_DESTINATION' });
      const records = await stack.pool.query('SELECT count(*)::int AS n FROM idempotency_records WHERE account_id = $1', [accountId]);
      expect(records.rows[0].n).toBe(0);
      const payouts = await stack.pool.query('SELECT count(*)::int AS n FROM payouts WHERE account_id = $1', [accountId]);
      expect(payouts.rows[0].n).toBe(0);
      await expect(stack.temporal.workflow.getHandle(resourceIdFor('po', accountId, key)).describe()).rejects.toThrow(WorkflowNotFoundError);
      expect(await stack.ledger.getBalance(accountId)).toMatchObject({ available: 1_000, held: 0 });
    });

    it('valid IBANs of several countries are held and settled; the print format is accepted', async () => {
      for (const iban of [...VALID, 'gb82 west 1234 5698 7654 32']) {
        const accountId = await stack.fundedAccount(1_000);
        const res = await stack.postPayout(bankTransfer(accountId, iban), uniqueId('iban'));
        expect(res.status, `${iban}: ${res.text}`).toBe(201);
        expect(res.json).toMatchObject({ status: 'HELD', destination: { method: 'bank_transfer', last4: iban.replace(/ /g, '').slice(-4).toUpperCase() } });
        await stack.waitForStatus(res.json.payout_id, ['SETTLED']);
      }
    });
  });
});
