import path from 'node:path';
import fs from 'node:fs';
import { Connection } from '@temporalio/client';
import { startProcess, whenReady, type ManagedProcess } from '../lib/processes';
import { waitUntil } from '../lib/wait';
import { CUSTOM_SEARCH_ATTRIBUTES } from './search-attributes';

export interface DevServerOptions {
  cliPath: string;
  ip?: string;
  port: number;
  /** Web UI port; undefined runs headless. */
  uiPort?: number;
  /** SQLite file for persistence; undefined keeps everything in memory (tests). */
  dbFile?: string;
  namespace: string;
  onLine?: (line: string) => void;
  startTimeoutMs?: number;
}

export interface DevServerHandle {
  address: string;
  uiUrl?: string;
  process: ManagedProcess;
  stop(): Promise<void>;
}

/** Runs `temporal server start-dev` with our search attributes registered, and waits until it serves. */
export async function startTemporalDevServer(opts: DevServerOptions): Promise<DevServerHandle> {
  const ip = opts.ip ?? '127.0.0.1';
  const args = ['server', 'start-dev', '--ip', ip, '--port', String(opts.port), '--namespace', opts.namespace, '--log-format', 'json', '--log-level', 'warn'];
  if (opts.uiPort === undefined) args.push('--headless');
  else args.push('--ui-port', String(opts.uiPort));
  if (opts.dbFile) {
    fs.mkdirSync(path.dirname(opts.dbFile), { recursive: true });
    args.push('--db-filename', opts.dbFile);
    // Write-ahead log, synced at checkpoints: the default rollback journal with a sync per commit halves
    // what the server sustains (issue 9). A crash of the process loses nothing; a power cut can lose the last
    // commits, which Temporal then redoes (every step is idempotent). Production runs Temporal on PostgreSQL.
    args.push('--sqlite-pragma', 'journal_mode=wal', '--sqlite-pragma', 'synchronous=normal');
  }
  for (const [name, type] of Object.entries(CUSTOM_SEARCH_ATTRIBUTES)) args.push('--search-attribute', `${name}=${type}`);
  // Update-with-start (early payout answers) needs multi-operations; stated explicitly, not left to defaults.
  args.push('--dynamic-config-value', 'frontend.enableExecuteMultiOperation=true');
  args.push('--dynamic-config-value', 'frontend.enableUpdateWorkflowExecution=true');

  const tail: string[] = [];
  const proc = startProcess('temporal', opts.cliPath, args, {
    onLine: (line) => {
      tail.push(line);
      if (tail.length > 30) tail.shift();
      opts.onLine?.(line);
    },
  });
  const address = `${ip}:${opts.port}`;
  await whenReady(proc, waitForTemporal(address, opts.namespace, opts.startTimeoutMs ?? 60_000), 'temporal dev server', { lastLines: tail });
  return {
    address,
    uiUrl: opts.uiPort === undefined ? undefined : `http://${ip === '0.0.0.0' ? '127.0.0.1' : ip}:${opts.uiPort}`,
    process: proc,
    stop: () => proc.stop(15_000),
  };
}

/** Waits until the frontend answers and the namespace exists. */
export async function waitForTemporal(address: string, namespace: string, timeoutMs: number): Promise<void> {
  await waitUntil(
    `Temporal at ${address}`,
    async () => {
      const connection = await Connection.connect({ address, connectTimeout: 1_000 });
      try {
        await connection.workflowService.describeNamespace({ namespace });
        return true;
      } finally {
        await connection.close();
      }
    },
    timeoutMs,
    300,
  );
}
