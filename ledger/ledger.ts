import type { Pool } from '../lib/db';
import { ledgerCommands, type LedgerOptions } from './commands';
import { ledgerReads } from './reads';

export type { LedgerOptions } from './commands';

/** The ledger: its reads (ledger/reads.ts) and its commands (ledger/commands.ts), over one pool. */
export function createLedger(pool: Pool, options: LedgerOptions = {}) {
  const reads = ledgerReads(pool);
  return { ...reads, ...ledgerCommands(pool, reads, options) };
}

export type Ledger = ReturnType<typeof createLedger>;
