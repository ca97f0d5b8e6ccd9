import fs from 'node:fs';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import type { Client } from '@temporalio/client';
import { inject } from 'vitest';
import { ensureTemporalCli } from '../../temporal/cli';

export const HISTORIES_DIR = path.join(import.meta.dirname, 'histories');

/**
 * With RECORD_HISTORIES=1 (`npm run histories:record`), saga tests save the histories of the workflows
 * they ran here; test/replay replays every saved history against the current workflow code, so a change
 * that would break running workflows fails CI. Recorded once per workflow change that is meant to be
 * compatible; never edited by hand.
 */
export async function recordHistory(client: Client, name: string, workflowId: string): Promise<void> {
  if (process.env.RECORD_HISTORIES !== '1') return;
  // The CLI writes the canonical proto3 JSON that historyFromJSON reads (as the Web UI's download does).
  await client.workflow.getHandle(workflowId).result().catch(() => undefined);
  const json = execFileSync(ensureTemporalCli().path, ['workflow', 'show', '--workflow-id', workflowId, '--address', inject('temporalAddress'), '--namespace', client.options.namespace, '--output', 'json'], { encoding: 'utf8' });
  fs.mkdirSync(HISTORIES_DIR, { recursive: true });
  fs.writeFileSync(path.join(HISTORIES_DIR, `${name}.json`), json);
}
