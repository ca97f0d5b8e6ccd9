import fs from 'node:fs';
import path from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { repoRoot } from '../../lib/config';
import { sleep } from '../../lib/wait';
import { uniqueId } from '../support';
import { resourceIdFor } from '../../apps/api/sagas/idempotency';
import { depositRequest, payoutRequest, startSagaStack, type SagaStack } from '../support/saga-stack';

/** Debian's Chromium (apt-get install chromium), or the browser named by CHROMIUM_PATH. */
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
export const SCREENSHOT = path.join(repoRoot, 'test-results', 'temporal-ui-stuck-payouts.png');

describe('finance staff find a stuck payout in the Temporal Web UI', () => {
  let stack: SagaStack;
  let browser: Browser;
  beforeAll(async () => {
    expect(inject('temporalUiUrl'), 'the Temporal Web UI of the test server (set TEST_TEMPORAL_UI_URL with TEST_TEMPORAL_ADDRESS)').not.toBe('');
    expect(fs.existsSync(CHROMIUM), `Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`).toBe(true);
    stack = await startSagaStack({ PROVIDER_STUCK_AFTER_MS: '1000', PROVIDER_POLL_INITIAL_MS: '60000', PROVIDER_POLL_MAX_MS: '60000' });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      // A closed network: no background fetches, no component updates, no sandbox (we run as root in CI).
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('filters by the stuck marker and shows the payout; the screenshot is saved', async () => {
    const accountId = await stack.fundedAccount(1_000);
    const res = await stack.postPayout(payoutRequest(accountId, 400, 'sandbox:stay_pending'), uniqueId('key'));
    const payoutId: string = res.json.payout_id;
    const query = `PayoutStuck = true AND PayoutStatus = "SUBMITTED" AND AccountId = "${accountId}"`;
    // Wait until Temporal's visibility store lists it as staff would see it.
    for (let i = 0; ; i++) {
      const found = await stack.temporal.workflow.count(query.replace(/"/g, "'"));
      if (found.count === 1) break;
      if (i > 100) throw new Error('stuck payout never listed by visibility');
      await sleep(200);
    }

    const page = await browser.newPage({ viewport: { width: 1600, height: 900 } });
    const url = `${inject('temporalUiUrl')}/namespaces/${inject('temporalNamespace')}/workflows?query=${encodeURIComponent(query)}`;
    await page.goto(url);
    const row = page.getByText(payoutId).first();
    await row.waitFor({ state: 'visible', timeout: 30_000 });
    await expect(page.getByText('payoutSaga').first().isVisible()).resolves.toBe(true);
    fs.mkdirSync(path.dirname(SCREENSHOT), { recursive: true });
    await page.screenshot({ path: SCREENSHOT, fullPage: false });
    expect(fs.statSync(SCREENSHOT).size).toBeGreaterThan(10_000);

    // A payout that is not stuck is not in the filtered list.
    const other = await stack.postPayout(payoutRequest(accountId, 100), uniqueId('key'));
    await stack.waitForStatus(other.json.payout_id, ['SETTLED']);
    await page.reload();
    await row.waitFor({ state: 'visible', timeout: 30_000 });
    expect(await page.getByText(other.json.payout_id).count()).toBe(0);
    await page.close();

    // Leave nothing running: resolve it as staff would after checking with the provider.
    const provider = (await (await fetch(`${stack.sandboxUrl}/v1/payouts?reference=${payoutId}`)).json()) as { id: string };
    await fetch(`${stack.sandboxUrl}/sandbox/payouts/${provider.id}/resolve`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ outcome: 'fail' }) });
    await stack.waitForStatus(payoutId, ['FAILED']);
  });

  it('a player pays a deposit on the sandbox checkout page and is credited once', async () => {
    const accountId = await stack.fundedAccount(0);
    const key = uniqueId('dep');
    await stack.scriptSandbox(resourceIdFor('dp', accountId, key), { scenario: 'stay_pending' });
    const res = await stack.postDeposit(depositRequest(accountId, 1_250), key);
    expect(res.status).toBe(201);

    const page = await browser.newPage();
    await page.goto(res.json.checkout_url);
    await expect(page.getByText('1250 EUR').isVisible()).resolves.toBe(true);
    await page.getByRole('button', { name: 'Pay' }).click();
    await page.getByText('succeeded').waitFor({ timeout: 10_000 });
    await page.close();

    await stack.waitForDepositStatus(res.json.deposit_id, ['CREDITED']);
    expect(await stack.ledger.getBalance(accountId)).toMatchObject({ posted: 1_250 });
  });
});
