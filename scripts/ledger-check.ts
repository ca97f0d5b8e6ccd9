/**
 * `npm run ledger:check`: verifies the ledger's money invariants on the configured database.
 * Prints each violation as one JSON line on stdout and exits 1 if there is any; exits 0 when clean.
 */
import { checkInvariants, INVARIANT_RULES } from '../ledger';
import { databaseUrl, loadConfigOrExit } from '../lib/config';
import { createPool } from '../lib/db';

const config = loadConfigOrExit();
const pool = createPool(databaseUrl(config), 2);
try {
  const report = await checkInvariants(pool);
  for (const violation of report.violations) process.stdout.write(`${JSON.stringify(violation)}\n`);
  process.stderr.write(
    report.ok
      ? `ledger: all ${INVARIANT_RULES.length} invariants hold (${INVARIANT_RULES.join(', ')})\n`
      : `ledger: ${report.violations.length} violation(s)\n`,
  );
  process.exitCode = report.ok ? 0 : 1;
} catch (err) {
  process.stderr.write(`ledger: cannot check invariants: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exitCode = 2;
} finally {
  await pool.end();
}
