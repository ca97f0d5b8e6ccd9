import path from 'node:path';
import { runner } from 'node-pg-migrate';
import { repoRoot } from './config';

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
