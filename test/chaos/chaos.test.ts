import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FAULT_KINDS } from '../../chaos/faults';
import { PAYOUT_SCENARIOS } from '../../chaos/workload';
import { runReportingScript } from '../support/report-run';

/** `npm run chaos` as a user runs it (its own launched stack, Toxiproxy, receiver), stopped after `minutes`. */
const chaos = (resultsDir: string, minutes: number, ...args: string[]) => runReportingScript('chaos/main.ts', resultsDir, args, minutes * 60_000);

describe('chaos run (npm run chaos)', () => {
  const dirs: string[] = [];
  const resultsDir = () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'payout-chaos-results-'));
    dirs.push(dir);
    return dir;
  };
  afterAll(() => {
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('short run: a few hundred payouts of every scenario through every fault kind; nothing lost, nothing twice, ledger, reconciliation and outbox clean', async () => {
    const { code, stdout, stderr, report } = await chaos(resultsDir(), 13);
    expect(code, `${stdout}\n${stderr.slice(-3000)}`).toBe(0);
    expect(report.verdict).toMatchObject({ pass: true, lost: 0, duplicated: 0, failure_count: 0 });
    // Every fault kind was inflicted (none failed to start), while the workload ran.
    expect(report.faults.map((f: { kind: string }) => f.kind).sort()).toEqual([...FAULT_KINDS].sort());
    expect(report.faults.filter((f: { detail: string }) => f.detail.startsWith('could not inflict'))).toEqual([]);
    expect(report.workload.payouts).toBeGreaterThanOrEqual(300);
    expect(report.workload.requests_retried).toBeGreaterThan(0); // the faults reached the clients
    // Every scenario ran and ended as it implies (or cancelled, when a player's cancel got in before submission).
    for (const scenario of new Set(PAYOUT_SCENARIOS.map((s) => s.name))) {
      const expected = PAYOUT_SCENARIOS.find((s) => s.name === scenario)!.expected;
      const ended = Object.keys(report.outcomes[`payout/${scenario}`] ?? {});
      expect(ended, scenario).toContain(expected);
      expect(ended.filter((state) => state !== expected && state !== 'CANCELLED'), scenario).toEqual([]);
    }
    expect(report.outcomes['deposit/settle']).toEqual({ CREDITED: expect.any(Number) });
    expect(report.outcomes['deposit/fail']).toEqual({ FAILED: expect.any(Number) });
    expect(report.reconciliation.status).toBe('clean');
    expect(report.ledger_check.exit).toBe(0);
    expect(report.outbox.deliveries).toBeGreaterThanOrEqual(report.outbox.events);
  }, 900_000);

  it('a deliberately broken build (retried provider submissions sent as new payouts) fails the run, naming the payouts paid twice', async () => {
    const { code, stdout, report } = await chaos(resultsDir(), 8, '--broken', 'submission-key', '--payouts', '40', '--faults', 'none', '--drain-s', '45');
    expect(code).toBe(1);
    expect(stdout).toMatch(/FAIL submitted twice: po_[0-9a-f]{32}: [2-9] provider submissions on the sandbox's record/);
    expect(report.verdict.pass).toBe(false);
    expect(report.verdict.duplicated).toBeGreaterThan(0);
    expect(report.stack.broken).toBe('submission-key');
  }, 600_000);
});
