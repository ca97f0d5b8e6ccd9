import fs from 'node:fs';
import path from 'node:path';
import { Worker } from '@temporalio/worker';
import { describe, expect, inject, it } from 'vitest';
import { createLogger } from '../../lib/logger';
import { installTemporalRuntime } from '../../lib/temporal-runtime';
import { HISTORIES_DIR } from './histories';

// Replay workers log at WARN and above only (a determinism failure is reported as the test's error).
installTemporalRuntime(createLogger('replay', 'warn'), 'WARN');

const files = fs.existsSync(HISTORIES_DIR) ? fs.readdirSync(HISTORIES_DIR).filter((f) => f.endsWith('.json')).sort() : [];

describe('recorded workflow histories replay against the current workflow code', () => {
  it('has recorded histories for every saga branch', () => {
    expect(files.length).toBeGreaterThanOrEqual(6);
  });

  it.each(files)('%s replays deterministically', async (file) => {
    // runReplayHistory takes the JSON form (as `temporal workflow show -o json` and the Web UI export it).
    const history: unknown = JSON.parse(fs.readFileSync(path.join(HISTORIES_DIR, file), 'utf8'));
    // Throws DeterminismViolationError when the code no longer produces the recorded commands.
    await Worker.runReplayHistory({ workflowBundle: { codePath: inject('workflowBundlePath') } }, history, file.replace(/\.json$/, ''));
  });
});
