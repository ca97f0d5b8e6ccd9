import path from 'node:path';
import { runner } from 'node-pg-migrate';
import { repoRoot } from './config';
import { createPool } from './db';
import { createDestinationVault, sealPlaintextDestinations, type DestinationKeyRing } from './destination-vault';

export const MIGRATIONS_DIR = path.join(repoRoot, 'migrations');

/**
 * Applies every pending SQL migration in migrations/ (node-pg-migrate records them in
 * `pgmigrations`, so each runs once; an advisory lock serialises concurrent starters).
 */
export async function migrateUp(databaseUrl: string, log: (msg: string) => void = () => undefined): Promise<string[]> {
  const applied = await runner({
    databaseUrl,
    dir: MIGRATIONS_DIR,
    direction: 'up',
    migrationsTable: 'pgmigrations',
    count: Infinity,
    checkOrder: true,
    singleTransaction: true,
    log,
  });
  return applied.map((m) => m.name);
}

/**
 * The migrate step (`npm run migrate`, the launcher): the SQL migrations, then what SQL cannot do because
 * the key lives in the environment: sealing destinations stored in plain text before encryption at rest.
 */
export async function migrateDatabase(databaseUrl: string, destinationKeys: DestinationKeyRing, log: (msg: string) => void = () => undefined): Promise<{ applied: string[]; sealed: number }> {
  const applied = await migrateUp(databaseUrl, log);
  const pool = createPool(databaseUrl, 2);
  try {
    return { applied, sealed: await sealPlaintextDestinations(pool, createDestinationVault(destinationKeys)) };
  } finally {
    await pool.end();
  }
}
