import type { Pool } from '../lib/db';
import { createDestinationVault, type DestinationKeyRing } from '../lib/destination-vault';
import type { MoneyLimits } from '../lib/limits';
import { aggregatorAt } from './aggregator-client';
import { createDepositActivities } from './deposits';
import { createLedger } from '../ledger';
import { createPayoutLedgerActivities } from './payout-ledger';
import { createPayoutActivities } from './payouts';
import { createProviderActivities } from './provider';
import { createProviderIncidentActivities } from './provider-incidents';
import { createReconciliationActivities } from './reconciliation';
import { createSelfCheckActivities } from './self-check';

export interface ActivityDeps {
  pool: Pool;
  /** Base URL of the payment aggregator (the sandbox in development). */
  providerUrl: string;
  /** Payout and deposit limits (EUR-equivalent, converted per currency). */
  limits: MoneyLimits;
  /** Opens the encrypted payout destinations (DESTINATION_KEYS), in the submission activity only. */
  destinationKeys: DestinationKeyRing;
  /** Bearer token the aggregator requires (SANDBOX_API_TOKEN), if any. */
  providerToken?: string;
  /** CHAOS_BREAK: a deliberately broken build (tests of the chaos run only). */
  chaosBreak?: 'submission-key';
}

/** Every activity the worker registers (payout and deposit sagas), bound to its dependencies. */
export function createActivities(deps: ActivityDeps) {
  const ledger = createLedger(deps.pool);
  const aggregator = aggregatorAt(deps.providerUrl, deps.providerToken);
  return {
    ...createSelfCheckActivities(deps.pool),
    ...createPayoutActivities({ pool: deps.pool, ledger, limits: deps.limits }),
    ...createPayoutLedgerActivities(ledger, deps.pool),
    ...createProviderActivities({ aggregator, pool: deps.pool, destinations: createDestinationVault(deps.destinationKeys), chaosBreak: deps.chaosBreak }),
    ...createProviderIncidentActivities(deps.pool),
    ...createDepositActivities({ pool: deps.pool, ledger, aggregator, limits: deps.limits }),
    ...createReconciliationActivities({ pool: deps.pool, aggregator }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
