import type { Pool } from '../lib/db';
import { createDestinationVault, type DestinationKeyRing } from '../lib/destination-vault';
import type { MoneyLimits } from '../lib/limits';
import { Runtime } from '@temporalio/worker';
import type { ProviderConnection } from '../lib/providers';
import { ProviderRegistry, type BreakerSettings } from './provider-registry';
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
  /** The payment providers payouts are routed to (PAYOUT_ROUTES), each with its breaker settings. */
  providers: readonly ProviderConnection[];
  breaker: BreakerSettings;
  /** Payout and deposit limits (EUR-equivalent, converted per currency). */
  limits: MoneyLimits;
  /** Opens the encrypted payout destinations (DESTINATION_KEYS), in the submission activity only. */
  destinationKeys: DestinationKeyRing;
  /** CHAOS_BREAK: a deliberately broken build (tests of the chaos run only). */
  chaosBreak?: 'submission-key';
}

/** Every activity the worker registers (payout and deposit sagas), bound to its dependencies. */
export function createActivities(deps: ActivityDeps) {
  const ledger = createLedger(deps.pool);
  // Provider health metrics are served with the SDK's, at WORKER_METRICS_ADDRESS.
  const providers = new ProviderRegistry(deps.providers, deps.breaker, deps.pool, Runtime.instance().metricMeter);
  return {
    ...createSelfCheckActivities(deps.pool),
    ...createPayoutActivities({ pool: deps.pool, ledger, limits: deps.limits }),
    ...createPayoutLedgerActivities(ledger, deps.pool),
    ...createProviderActivities({ providers, pool: deps.pool, destinations: createDestinationVault(deps.destinationKeys), chaosBreak: deps.chaosBreak }),
    ...createProviderIncidentActivities(deps.pool),
    ...createDepositActivities({ pool: deps.pool, ledger, providers, limits: deps.limits }),
    ...createReconciliationActivities({ pool: deps.pool, providers }),
  };
}

export type Activities = ReturnType<typeof createActivities>;
