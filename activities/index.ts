import type { Pool } from '../lib/db';
import { useAggregatorToken } from './aggregator-client';
import { createDepositActivities } from './deposits';
import { createLedger } from './ledger';
import { createPayoutLedgerActivities } from './payout-ledger';
import { createPayoutActivities, type PayoutLimits } from './payouts';
import { createProviderActivities } from './provider';
import { createReconciliationActivities } from './reconciliation';
import { createSelfCheckActivities } from './self-check';

export interface ActivityDeps {
  pool: Pool;
  /** Base URL of the payment aggregator (the sandbox in development). */
  providerUrl: string;
  /** Bearer token the aggregator requires (SANDBOX_API_TOKEN), if any. */
  providerToken?: string;
  payoutLimits: PayoutLimits;
}

/** Every activity the worker registers (payout and deposit sagas), bound to its dependencies. */
export function createActivities(deps: ActivityDeps) {
  const ledger = createLedger(deps.pool);
  useAggregatorToken(deps.providerToken);
  return {
    ...createSelfCheckActivities(deps.pool),
    ...createPayoutActivities({ pool: deps.pool, ledger, limits: deps.payoutLimits }),
    ...createPayoutLedgerActivities(ledger),
    ...createProviderActivities({ providerUrl: deps.providerUrl, pool: deps.pool }),
    ...createDepositActivities({ pool: deps.pool, ledger, providerUrl: deps.providerUrl }),
    ...createReconciliationActivities({ pool: deps.pool, providerUrl: deps.providerUrl }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
