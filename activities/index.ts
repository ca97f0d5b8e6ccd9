import type { Pool } from '../lib/db';
import { createSelfCheckActivities } from './self-check';

export interface ActivityDeps {
  pool: Pool;
}

/** Every activity the payout worker registers, bound to its dependencies. */
export function createActivities(deps: ActivityDeps) {
  return {
    ...createSelfCheckActivities(deps.pool),
  };
}

export type Activities = ReturnType<typeof createActivities>;
