import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { PAYOUT_SCENARIOS } from '../../chaos/workload';
import { runReportingScript } from '../support/report-run';

/** `npm run dr:drill` as a user runs it: its own regions, provider and standby, stopped after `minutes`. */
const drill = (resultsDir: string, minutes: number, ...args: string[]) => runReportingScript('dr/main.ts', resultsDir, args, minutes * 60_000);

describe('disaster-recovery drill (npm run dr:drill)', () => {
  const resultsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payout-dr-results-'));
  afterAll(() => fs.rmSync(resultsDir, { recursive: true, force: true }));

  it('short run over a slow link: region A killed under load, B takes over; the lost payouts are listed, sent again and paid once, also those the provider had already seen', async () => {
    // The replication link delayed 2 s: what A acknowledged in its last 2 s never reached B, so the drill has lost
    // payouts, some already submitted to the provider, to show that sending them again pays nobody twice.
    const { code, stdout, stderr, report, files } = await drill(resultsDir, 13, '--short', '--link-latency-ms', '2000');
    expect(code, `${stdout}\n${stderr.slice(-3000)}`).toBe(0);
    expect(report.verdict).toMatchObject({ pass: true, duplicated: 0, lost_after_replay: 0, failure_count: 0 });
    expect(report.setup.killed).toEqual(expect.arrayContaining(['launcher', 'postgres', 'temporal', 'worker', 'worker-2', 'api', 'api-2', 'outbox-publisher']));

    // RPO: some acknowledged transactions lost, within the link's delay; each listed and answered again 201/202.
    expect(report.rpo.lost_transactions).toBeGreaterThan(0);
    expect(report.rpo.lost).toHaveLength(report.rpo.lost_transactions);
    expect(report.rpo.seconds).toBeGreaterThan(0);
    expect(report.rpo.seconds).toBeLessThanOrEqual(5);
    expect(report.rpo.standby_last_commit_before_kill_ms).toBeGreaterThanOrEqual(1_500);
    // Every lost transaction was committed in A after the last commit B has, so acknowledged within that window.
    expect(report.rpo.lost_acknowledgements_s).toBeLessThanOrEqual(report.rpo.seconds + 0.1);
    for (const lost of report.rpo.lost) expect([201, 202], lost.id).toContain(lost.replay_status);
    // Found through the accounts' listings: only the few B does not list are asked for one by one.
    expect(report.rpo.lookup.unlisted).toBeGreaterThanOrEqual(report.rpo.lost_transactions);
    expect(report.rpo.lookup.unlisted).toBeLessThan(report.rpo.acknowledged_before_kill / 2);
    // The hard case: the provider had the submission, the standby never did; it was paid once (verdict above).
    expect(report.rpo.lost_already_submitted_to_provider).toBeGreaterThan(0);

    // RTO: B answers payouts and finishes every saga that was in flight at the kill.
    expect(report.rto.first_payout_s).toBeGreaterThan(0);
    expect(report.rto.first_payout_s).toBeLessThanOrEqual(60);
    expect(report.rto.in_flight_settled_s).toBeGreaterThan(0);
    expect(report.rto.in_flight_settled_s).toBeLessThanOrEqual(300);
    expect(Object.values(report.targets).every((t: any) => t.met)).toBe(true);

    // Every scenario ran and ended as it implies, in B.
    for (const scenario of new Set(PAYOUT_SCENARIOS.map((s) => s.name))) {
      const expected = PAYOUT_SCENARIOS.find((s) => s.name === scenario)!.expected;
      expect(Object.keys(report.outcomes[`payout/${scenario}`] ?? {}), scenario).toEqual([expected]);
    }
    expect(report.reconciliation.status).toBe('clean');
    expect(report.ledger_check.exit).toBe(0);
    // The events A delivered for transfers B lost were made again in B with the same ids (derived from the keys).
    expect(report.outbox.delivered_only_by_a).toBe(0);
    // An event delivered by both regions differs at most in what B's ledger numbers itself and when.
    for (const field of Object.keys(report.outbox.fields_differing)) expect(['occurred_at', 'transfer.id', 'transfer.pending_id', 'transfer.refund_of_id']).toContain(field);
    expect(files.some((f) => f.endsWith('.png'))).toBe(true);
    expect(stdout).toMatch(/RPO: [\d.]+ s: the last commit B has of A/);
    expect(stdout).toMatch(/\d+ of \d+ acknowledged transactions lost/);
    expect(stdout).toContain('verdict: PASS');
  }, 900_000);
});
