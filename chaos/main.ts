/**
 * `npm run chaos`: thousands of payouts through crashes, restarts and network faults, on the stack `npm start`
 * runs (the launcher as a child process, default settings), with Toxiproxy between worker and provider and
 * between provider and API. The verdict is computed from outside once everything has settled (chaos/verdict.ts).
 *
 *   npm run chaos                   short run: a few hundred payouts, every fault once (CI runs it)
 *   npm run chaos -- --long         10,000 payouts, every fault several times
 *   --cluster                       on the production topology (npm start -- --cluster: Temporal server on
 *                                   PostgreSQL, two workers, two API instances); the faults hit the first of each
 *   --payouts N --rate R            workload size and open-loop rate (payouts per second)
 *   --broken submission-key         a deliberately broken build (CHAOS_BREAK): the run must fail, naming it
 *   --faults kill-worker,...|none   only these fault kinds (default: every kind)
 *   --drain-s S                     how long to wait for every saga to settle after the workload (300)
 *   --results DIR                   where the report goes (bench/results)
 *
 * Prints the report, saves it as bench/results/chaos[-long|-broken]-<date>.json and .png; exit code 0 only
 * when nothing was lost, nothing happened twice, and the ledger, reconciliation and outbox are clean.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { killLeftovers, startStack, type Stack } from '../bench/stack';
import { renderChaosChartPng } from '../bench/chart';
import { repoRoot, settings } from '../lib/config';
import { stopOnSignal } from '../lib/processes';
import { signToken } from '../lib/tokens';
import { sleep } from '../lib/wait';
import { FAULT_KINDS, inflict, PROVIDER_PROXY, WEBHOOK_PROXY, type FaultKind, type FaultRecord } from './faults';
import { startOutboxReceiver } from './receiver';
import { startToxiproxy, type Toxiproxy } from './toxiproxy';
import { checkMoney, checkOutboxSettled, reconcile, runLedgerCheck, stillOpen, type Failure } from './verdict';
import { depositBody, newDeposit, newPayout, PAYOUT_SCENARIOS, payoutBody, countBy, fundAccounts, perSecond, scriptSandbox, send, type ClientOptions, type Request } from './workload';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(`--${name}`);
const option = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const long = flag('long');
const cluster = flag('cluster');
const broken = option('broken') as 'submission-key' | undefined;
const payoutCount = Number(option('payouts') ?? (long ? 10_000 : 300));
const rate = Number(option('rate') ?? (long ? 8 : 3));
/** How long to wait, after the workload, for every accepted request to reach its final state. */
const drainS = Number(option('drain-s') ?? 300);
const resultsDir = path.resolve(option('results') ?? path.join(repoRoot, 'bench', 'results'));
const faultRounds = long ? 4 : 1;
/** --faults a,b,c (or none): only these kinds, e.g. for the broken build's quick run. */
const faultKinds: FaultKind[] = option('faults') === undefined ? [...FAULT_KINDS] : option('faults') === 'none' ? [] : (option('faults')!.split(',') as FaultKind[]);
for (const kind of faultKinds) if (!FAULT_KINDS.includes(kind)) throw new Error(`unknown fault kind ${kind}; known: ${FAULT_KINDS.join(', ')}`);
/** The velocity limit allows 20 payouts per account per hour: 12 each leaves room. */
const PAYOUTS_PER_ACCOUNT = 12;
const FUNDING_MINOR = 1_000_000;
/** Failures listed most serious first (money twice, money lost), then the rest in check order. */
const SEVERITY = ['submitted twice', 'ledger movements', 'ledger amount', 'balance', 'lost', 'provider record differs', 'final state', 'not settled', 'not submitted', 'ledger:check', 'reconciliation', 'outbox event', 'outbox delivery', 'outbox order', 'outbox signature', 'harness'];
/** Load before the first fault, so every fault hits payouts in flight. */
const FAULT_LEAD_MS = 8_000;
const say = (msg: string) => process.stderr.write(`[chaos] ${msg}\n`);

async function main(): Promise<void> {
  const startedAt = new Date();
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'payout-chaos-'));
  say(`data folder ${dataDir}; ${payoutCount} payouts at ${rate}/s, ${faultKinds.length} fault kinds × ${faultRounds}${broken ? `, broken build: ${broken}` : ''}`);
  const toxiproxy = await startToxiproxy(dataDir, say);
  const receiver = await startOutboxReceiver(settings.OUTBOX_WEBHOOK_SECRET.default!);
  let sandboxDirect = '';
  let stack: Stack | undefined;
  const stopAll = stopOnSignal(async () => {
    await stack?.stop().catch(() => undefined);
    killLeftovers(dataDir); // a launcher interrupted while it was starting
    await toxiproxy.stop();
    await receiver.close();
  }, say);
  try {
    stack = await startStack(dataDir, () => undefined, {
      cluster,
      wire: async (ports) => {
        sandboxDirect = `http://127.0.0.1:${ports.sandbox}`;
        const provider = await toxiproxy.proxy(PROVIDER_PROXY, `127.0.0.1:${ports.sandbox}`);
        const webhooks = await toxiproxy.proxy(WEBHOOK_PROXY, `127.0.0.1:${ports.api}`);
        return {
          SANDBOX_URL: `http://${provider}`,
          SANDBOX_WEBHOOK_URL: `http://${webhooks}/v1/webhooks/sandbox`,
          // The faults sit on the path to provider `sandbox`: every payout goes there (failover between providers has its own tests).
          PAYOUT_ROUTES: '* -> sandbox',
          OUTBOX_ENDPOINTS: receiver.url,
          ...(broken ? { CHAOS_BREAK: broken } : {}),
        };
      },
    });
    say(`platform up at ${stack.apiUrl}; worker → provider and provider → API through Toxiproxy (${toxiproxy.apiUrl})`);
    const report = await run(stack, toxiproxy, receiver, sandboxDirect, dataDir, startedAt);
    const name = `chaos${cluster ? '-cluster' : ''}${long ? '-long' : ''}${broken ? '-broken' : ''}-${startedAt.toISOString().slice(0, 10)}`;
    fs.writeFileSync(path.join(resultsDir, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
    await renderChaosChartPng(
      {
        title: `Chaos run: ${report.workload.payouts} payouts and ${report.workload.deposits} deposits through ${report.faults.length} faults on the npm start${cluster ? ' -- --cluster' : ''} stack`,
        subtitle: `${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC · ${os.cpus().length} cores · verdict: ${report.verdict.pass ? 'PASS' : 'FAIL'} · lost ${report.verdict.lost}, duplicated ${report.verdict.duplicated}`,
        perSecond: report.per_second,
        faults: report.faults,
      },
      path.join(resultsDir, `${name}.png`),
    ).catch((err: unknown) => say(`chart not drawn: ${err instanceof Error ? err.message : String(err)}`));
    printReport(report);
    say(`saved ${path.relative(process.cwd(), path.join(resultsDir, name))}.json and .png`);
    process.exitCode = report.verdict.pass ? 0 : 1;
  } finally {
    await stopAll();
  }
}

async function run(stack: Stack, toxiproxy: Toxiproxy, receiver: Awaited<ReturnType<typeof startOutboxReceiver>>, sandboxDirect: string, dataDir: string, startedAt: Date) {
  const token = await signToken({ sub: 'chaos-backend', role: 'service' }, stack.config.AUTH_JWT_SECRET);
  const staff = await signToken({ sub: 'chaos-staff', role: 'staff' }, stack.config.AUTH_JWT_SECRET);
  const client: ClientOptions = { apiUrls: stack.apiUrls, token, attemptTimeoutMs: 5_000, giveUpAfterMs: 180_000 };
  const db = new pg.Pool({ connectionString: stack.databaseUrl, max: 4 });
  db.on('error', () => undefined);
  try {
    // The workload lasts until both the payouts are sent and the faults are over: as many payouts as that takes.
    const schedule: FaultKind[] = Array.from({ length: faultRounds }, () => faultKinds).flat();
    const gapS = schedule.length === 0 ? 0 : Math.max(3, (payoutCount / rate - 15) / schedule.length - 6);
    const scheduleS = schedule.length === 0 ? 0 : FAULT_LEAD_MS / 1000 + schedule.length * (gapS + 4);
    const plannedPayouts = Math.max(payoutCount, Math.ceil(rate * (scheduleS + 10)));
    // Accounts, each funded by one deposit before the faults start; payouts go round robin over them.
    const accounts = Array.from({ length: Math.ceil(plannedPayouts / PAYOUTS_PER_ACCOUNT) }, (_, i) => `chaos-${startedAt.getTime()}-${i}`);
    const funded = await fundAccounts(client, accounts, FUNDING_MINOR, async (deposits) => (await stillOpen(db, deposits)).length === 0);
    say(`${accounts.length} accounts funded; workload and faults start`);

    // The workload, open loop, and the fault schedule beside it.
    const t0 = Date.now();
    const clock = () => (Date.now() - t0) / 1000;
    const requests: Request[] = [];
    const inFlight: Promise<void>[] = [];
    let payoutsSent = 0;
    /** The harness's own calls must not crash it: whatever they throw is kept on the request. */
    const track = (request: Request, work: Promise<void>) =>
      inFlight.push(
        work.catch((err: unknown) => {
          request.harnessError = err instanceof Error ? err.message : String(err);
        }),
      );
    const sendPayout = (i: number) => {
      const scenario = PAYOUT_SCENARIOS[i % PAYOUT_SCENARIOS.length]!;
      const accountId = accounts[i % accounts.length]!;
      const request = newPayout(accountId, scenario, 100 + ((i * 37) % 900));
      requests.push(request);
      track(
        request,
        (async () => {
          const answer = await send(client, 'POST', '/v1/payouts', payoutBody(request, scenario.walletId), request.key, request.attempts);
          request.answer = answer ? { status: answer.status, at: Date.now(), ...(answer.json?.code ? { code: answer.json.code } : {}) } : undefined;
          // Some players change their mind at once and ask support, who cancel (reverse withdrawals are staff-only by default).
          if (answer && (answer.status === 201 || answer.status === 202) && i % 10 === 3) {
            const cancelled = await send({ ...client, token: staff }, 'POST', `/v1/ops/payouts/${request.id}/cancel`, { reason: 'player asked support to cancel' }, undefined, []);
            request.cancel = cancelled ? { status: cancelled.status, ...(cancelled.json?.code ? { code: cancelled.json.code } : {}) } : undefined;
          }
        })(),
      );
    };
    let depositsSent = 0;
    const sendDeposit = () => {
      const n = depositsSent++;
      const accountId = accounts[(n * 7) % accounts.length]!;
      const request = newDeposit(accountId, n % 4 === 1, 5_000);
      requests.push(request);
      track(
        request,
        (async () => {
          // The provider's outcome for this deposit, scripted before the platform submits it (the sandbox may be
          // restarting: the control call is retried, the deposit waits for it).
          if (request.expected === 'FAILED') await scriptSandbox(sandboxDirect, request.id, { scenario: 'fail' });
          const answer = await send(client, 'POST', '/v1/deposits', depositBody(request), request.key, request.attempts);
          request.answer = answer ? { status: answer.status, at: Date.now(), ...(answer.json?.code ? { code: answer.json.code } : {}) } : undefined;
        })(),
      );
    };
    const burst = async () => {
      for (let k = 0; k < 4; k++) sendPayout(payoutsSent++);
      await sleep(40); // on the wire: sagas starting, no answer yet
    };

    const faults: FaultRecord[] = [];
    const faultsDone = (async () => {
      await sleep(FAULT_LEAD_MS);
      for (const kind of schedule) {
        try {
          const record = await inflict(kind, { dataDir, toxiproxy, clock, burst, networkFaultMs: 5_000 });
          faults.push(record);
          say(`${record.at_s.toFixed(0)} s: ${record.detail}`);
        } catch (err) {
          faults.push({ kind, at_s: clock(), ended_s: clock(), detail: `could not inflict: ${err instanceof Error ? err.message : String(err)}` });
        }
        await sleep(gapS * 1000);
      }
    })();
    let faultsOver = false;
    void faultsDone.then(() => (faultsOver = true));
    for (let i = 0; payoutsSent < payoutCount || !faultsOver; i++) {
      const due = t0 + (i * 1000) / rate;
      if (due > Date.now()) await sleep(due - Date.now());
      if (i % 8 === 7) sendDeposit();
      else sendPayout(payoutsSent++);
    }
    await faultsDone;
    say(`${requests.length} requests sent in ${clock().toFixed(0)} s; waiting for the answers and for every saga to settle`);
    await Promise.all(inFlight);
    const drainStarted = Date.now();
    let open = await stillOpen(db, requests);
    while (open.length > 0 && Date.now() - drainStarted < drainS * 1000) {
      await sleep(2_000);
      open = await stillOpen(db, requests);
    }
    say(`drained in ${((Date.now() - drainStarted) / 1000).toFixed(0)} s (${open.length} still open)`);

    // From outside: money, provider record, ledger check, reconciliation, outbox.
    const money = await checkMoney(db, requests, {
      funded,
      balance: async (accountId) => {
        const answer = await send(client, 'GET', `/v1/accounts/${accountId}/balance`, undefined, undefined, []);
        return answer!.json;
      },
    });
    const failures: Failure[] = [
      // The harness failing on a request makes the run inconclusive, never a pass.
      ...requests.filter((r) => r.harnessError).map((r) => ({ check: 'harness', id: r.id, detail: r.harnessError! })),
      ...open.map((r) => ({ check: 'not settled', id: r.id, detail: `${r.kind}/${r.scenario} still open ${(Date.now() - drainStarted) / 1000} s after the run` })), ...money.failures,
    ];
    const ledgerCheck = runLedgerCheck(stack.databaseUrl);
    if (ledgerCheck.failure) failures.push(ledgerCheck.failure);
    const reconciliation = await reconcile({ temporalAddress: stack.temporalAddress, namespace: stack.config.TEMPORAL_NAMESPACE, apiUrl: stack.apiUrl, staffToken: staff });
    if (reconciliation.status !== 'clean') failures.push({ check: 'reconciliation', id: reconciliation.run_id ?? 'none', detail: JSON.stringify(reconciliation.detail).slice(0, 600) });
    const outbox = await checkOutboxSettled(db, startedAt, receiver.received);
    failures.push(...outbox.failures);
    if (receiver.badSignatures.length > 0) failures.push({ check: 'outbox signature', id: 'receiver', detail: `${receiver.badSignatures.length} deliveries with a bad signature` });

    for (const fault of faults) fault.recovered_after_s = firstAcceptedAfter(requests, t0, fault.at_s);
    failures.sort((a, b) => SEVERITY.indexOf(a.check) - SEVERITY.indexOf(b.check));
    const lost = failures.filter((f) => f.check === 'lost' || f.check === 'not settled').length;
    const duplicated = failures.filter((f) => f.check === 'submitted twice' || f.check === 'ledger movements').length;
    const retried = requests.filter((r) => r.attempts.length > 1);
    return {
      date: startedAt.toISOString(),
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
      stack: {
        started: 'apps/launcher/main.ts as a child process, own DATA_DIR and free ports, default settings; Toxiproxy between worker and provider and between provider and API',
        topology: cluster ? 'cluster: Temporal server on PostgreSQL, 2 workers, 2 API instances (faults hit the first of each)' : 'development: Temporal dev server, 1 worker, 1 API instance',
        broken: broken ?? null,
      },
      workload: {
        payouts: requests.filter((r) => r.kind === 'payout').length,
        deposits: requests.filter((r) => r.kind === 'deposit').length,
        accounts: accounts.length,
        rate_per_s: rate,
        seconds: Math.round(clock()),
        cancels: countBy(requests.filter((r) => r.cancel), (r) => `${r.cancel!.status} ${r.cancel!.code ?? ''}`.trim()),
        answers: countBy(requests, (r) => (r.answer ? `${r.answer.status}${r.answer.code ? ` ${r.answer.code}` : ''}` : 'no answer')),
        requests_retried: retried.length,
        attempts_by_outcome: countBy(requests.flatMap((r) => r.attempts), (a) => `${a.status}${a.code ? ` ${a.code}` : ''}`),
      },
      outcomes: money.outcomes,
      faults,
      reconciliation: { run_id: reconciliation.run_id, status: reconciliation.status },
      ledger_check: { exit: ledgerCheck.exit },
      outbox: { events: outbox.events, deliveries: outbox.deliveries, refused_first_deliveries: receiver.refused() },
      verdict: { pass: failures.length === 0, lost, duplicated, failures: failures.slice(0, 200), failure_count: failures.length },
      per_second: perSecond(requests, t0),
    };
  } finally {
    await db.end();
  }
}

/** Seconds from a fault's start to the first payout accepted (201/202) of those sent after it began. */
function firstAcceptedAfter(requests: Request[], t0: number, atS: number): number | null {
  const after = requests
    .filter((r) => r.kind === 'payout' && (r.answer?.status === 201 || r.answer?.status === 202) && (r.sentAt - t0) / 1000 >= atS)
    .map((r) => (r.answer!.at - t0) / 1000);
  return after.length ? Math.round((Math.min(...after) - atS) * 10) / 10 : null;
}

function printReport(report: Awaited<ReturnType<typeof run>>): void {
  const lines = [
    `\nchaos: ${report.workload.payouts} payouts, ${report.workload.deposits} deposits on ${report.workload.accounts} accounts in ${report.workload.seconds} s; ${report.workload.requests_retried} requests retried by their client`,
    `  answers ${JSON.stringify(report.workload.answers)}; cancels ${JSON.stringify(report.workload.cancels)}`,
    ...Object.entries(report.outcomes).map(([scenario, counts]) => `  ${scenario.padEnd(42)} ${JSON.stringify(counts)}`),
    '  faults:',
    ...report.faults.map((f) => `    ${f.at_s.toFixed(0).padStart(5)} s  ${f.kind.padEnd(24)} over after ${(f.ended_s - f.at_s).toFixed(1)} s, first payout sent after it accepted ${f.recovered_after_s ?? '—'} s after it began  (${f.detail})`),
    `  reconciliation ${report.reconciliation.status}; ledger:check exit ${report.ledger_check.exit}; outbox ${report.outbox.events} events, ${report.outbox.deliveries} deliveries (${report.outbox.refused_first_deliveries} refused once by the receiver)`,
    `  verdict: ${report.verdict.pass ? 'PASS' : 'FAIL'}: lost ${report.verdict.lost}, duplicated ${report.verdict.duplicated}, ${report.verdict.failure_count} failure(s)`,
    ...report.verdict.failures.slice(0, 20).map((f) => `    FAIL ${f.check}: ${f.id}: ${f.detail}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`[chaos] ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 2;
  })
  // A run that failed midway may still have clients retrying: its verdict is already printed.
  .finally(() => process.exit(process.exitCode ?? 0));
