/**
 * `npm run dr:drill`: lose region A under load and fail over to region B, then show from outside that every payout
 * acknowledged before the disaster is in B or listed lost, that the sagas in flight finished, and that nobody was
 * paid twice, also for the payouts whose submission the standby never saw.
 *
 *   Region A     `npm start -- --cluster` as a user runs it (apps/launcher, default settings): PostgreSQL with the
 *                ledger and Temporal's databases, the Temporal server on it, two workers, two API instances, outbox.
 *   Region B     a streaming standby of A's PostgreSQL (lib/standby-postgres.ts), over a link through Toxiproxy;
 *                the same launcher and settings configured on it, not running until the failover.
 *   Provider     both sandbox aggregators on a PostgreSQL of their own, outside both regions: it outlives A.
 *
 * The drill: open-loop payouts and deposits against A (provider callbacks in flight), then A is killed at once
 * (SIGKILL of its launcher, PostgreSQL, Temporal, workers, API, publisher; the replication link cut), the standby is
 * promoted, B's launcher starts on it with A's addresses, and the load goes on against B. The operator's backend then
 * asks B for each payout it was told about (201/202) before the kill: one B does not know is lost, listed with its id
 * (the RPO), and sent again with its Idempotency-Key, as the runbook says. The verdict is computed from outside: the
 * clients' answers, B's read model and ledger, the provider's own record, ledger:check and a reconciliation run.
 *
 *   npm run dr:drill                          asynchronous replication, about 1,700 payouts (4/s, 240 s + 240 s)
 *   npm run dr:drill -- --sync                synchronous standby: a commit returns once B has it (RPO 0)
 *   --link-latency-ms N                       one-way delay on the replication link (a slow inter-region link; 0)
 *   --short                                   CI: 20 s before the kill and 15 s after B is up
 *   --rate R --before-s S --after-s S         open-loop rate, load before the kill, load after B is up
 *   --drain-s S                               how long to wait for every saga to settle after the load (300)
 *   --results DIR                             where the report goes (bench/results)
 *
 * Prints RPO, RTO and the verdict, saves bench/results/dr-drill[-sync][-link<ms>ms][-short]-<date>.json and .png; exit code 0
 * only when the verdict passes and the targets are met.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { DEFAULT_SANDBOX_SCHEMA } from '../apps/sandbox-aggregator/database';
import { renderChaosChartPng } from '../bench/chart';
import { killLeftovers, startStack, type Stack } from '../bench/stack';
import { startOutboxReceiver } from '../chaos/receiver';
import { startToxiproxy, type Toxiproxy } from '../chaos/toxiproxy';
import { checkMoney, checkOutboxSettled, reconcile, runLedgerCheck, stillOpen, type Failure, type ReceivedEvent } from '../chaos/verdict';
import { countBy, depositBody, fundAccounts, newDeposit, newPayout, PAYOUT_SCENARIOS, payoutBody, perSecond, scriptSandbox, send, type ClientOptions, type Request } from '../chaos/workload';
import { DEFAULT_RECONCILIATION_GRACE_SECONDS } from '../contracts/reconciliation';
import { repoRoot, settings } from '../lib/config';
import { replicationStatus, startStandby, type StandbyHandle } from '../lib/standby-postgres';
import { stopOnSignal } from '../lib/processes';
import { signToken } from '../lib/tokens';
import { freePort, sleep, waitUntil } from '../lib/wait';
import { allDead, chooseAddresses, killRegion, startProvider, type Provider } from './regions';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(`--${name}`);
const option = (name: string) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : undefined;
};
const short = flag('short');
const synchronous = flag('sync');
// 4/s is a steady load for region A on a 2-core machine that also runs the provider, the standby and the drill; at
// 6/s A fell behind before the kill there, which makes the drill a capacity test (docs/disaster-recovery.md).
const rate = Number(option('rate') ?? 4);
const beforeS = Number(option('before-s') ?? (short ? 20 : 240));
const afterS = Number(option('after-s') ?? (short ? 15 : 240));
const linkLatencyMs = Number(option('link-latency-ms') ?? 0);
const drainS = Number(option('drain-s') ?? 300);
const resultsDir = path.resolve(option('results') ?? path.join(repoRoot, 'bench', 'results'));
/** The issue's targets. */
const TARGETS = { rpo_s_async: 5, rpo_transactions_sync: 0, rto_first_payout_s: 60, rto_in_flight_settled_s: 300 };
/** The velocity limit allows 20 payouts per account per hour: 12 each leaves room (the lost ones are sent again). */
const PAYOUTS_PER_ACCOUNT = 12;
const FUNDING_MINOR = 1_000_000;
/** The replication link's proxy, the only one of the drill's Toxiproxy. */
const REPLICATION_LINK = 'replication';
/** The operator's backend looks up what it was told was accepted this many at a time. */
const LOOKUP_CONCURRENCY = 8;
const STANDBY_NAME = 'region_b';
const SEVERITY = ['submitted twice', 'ledger movements', 'ledger amount', 'balance', 'lost', 'provider record differs', 'final state', 'not settled', 'not submitted', 'ledger:check', 'reconciliation', 'outbox event', 'outbox delivery', 'outbox order', 'outbox signature', 'harness'];
const say = (msg: string) => process.stderr.write(`[dr] ${msg}\n`);
const accepted = (r: Request) => r.answer?.status === 201 || r.answer?.status === 202;

async function main(): Promise<void> {
  const startedAt = new Date();
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'payout-dr-'));
  say(`data folder ${root}; ${synchronous ? 'synchronous' : 'asynchronous'} standby${linkLatencyMs ? `, replication link delayed ${linkLatencyMs} ms` : ''}; ${rate}/s for ${beforeS} s before the kill and ${afterS} s after region B is up`);
  let toxiproxy: Toxiproxy | undefined;
  let receiver: Awaited<ReturnType<typeof startOutboxReceiver>> | undefined;
  let provider: Provider | undefined;
  let regionA: Stack | undefined;
  let regionB: Stack | undefined;
  let standby: StandbyHandle | undefined;
  // Set once the drill is being stopped: no region starts after that.
  let stopped = false;
  const stopAll = stopOnSignal(async () => {
    stopped = true;
    await regionB?.stop().catch(() => undefined);
    // Region A was killed; a drill stopped before the kill stops it here.
    await regionA?.stop().catch(() => undefined);
    // A launcher interrupted while it was starting has no handle yet: whatever it started is killed by its pids.
    for (const region of ['region-a', 'region-b']) killLeftovers(path.join(root, region));
    await standby?.stop().catch(() => undefined);
    await provider?.stop().catch(() => undefined);
    await toxiproxy?.stop();
    await receiver?.close();
  }, say);
  const startRegion = async (dir: string, env: Record<string, string>) => {
    if (stopped) throw new Error('the drill is stopping');
    const stack = await startStack(dir, () => undefined, { cluster: true, wire: async () => env });
    if (stopped) {
      await stack.stop();
      throw new Error('the drill is stopping');
    }
    return stack;
  };
  try {
    toxiproxy = await startToxiproxy(root, say);
    receiver = await startOutboxReceiver(settings.OUTBOX_WEBHOOK_SECRET.default!);
    const addresses = await chooseAddresses();
    provider = await startProvider(path.join(root, 'provider'), addresses.apiPort, () => undefined);
    // Every drill payout goes to provider `sandbox`: the verdict reads that provider's record.
    const regionEnv = { ...addresses.env, ...provider.platformEnv, PAYOUT_ROUTES: '* -> sandbox', OUTBOX_ENDPOINTS: receiver.url };
    const regionADir = path.join(root, 'region-a');
    regionA = await startRegion(regionADir, regionEnv);
    say(`region A up at ${regionA.apiUrls.join(', ')} (Temporal ${regionA.temporalAddress}); provider at ${provider.sandboxUrl}, ${provider.sandboxBUrl}`);

    // Region B's database: a standby of A's, streaming over a link that can be delayed and is cut with A.
    const primary = new URL(regionA.databaseUrl);
    const link = await toxiproxy.proxy(REPLICATION_LINK, `127.0.0.1:${primary.port}`);
    primary.host = link;
    standby = await startStandby({ primaryUrl: primary.toString(), primaryDataDir: path.join(regionADir, 'postgres'), dataDir: path.join(root, 'region-b', 'postgres'), port: await freePort(), name: STANDBY_NAME, synchronous });
    if (linkLatencyMs > 0) await toxiproxy.addToxic(REPLICATION_LINK, { name: 'wan', type: 'latency', attributes: { latency: linkLatencyMs, jitter: 0 } });
    say(`region B's PostgreSQL streaming from A (${(await standbyOnPrimary(regionA.databaseUrl))?.syncState}) on port ${standby.port}`);

    const report = await drill({ regionA, provider, standby, receiver, root, startedAt, startB: async () => (regionB = await startRegion(path.join(root, 'region-b'), { ...regionEnv, DATABASE_URL: standby!.url })), cutLink: () => toxiproxy!.kill() });
    const name = `dr-drill${synchronous ? '-sync' : ''}${linkLatencyMs ? `-link${linkLatencyMs}ms` : ''}${short ? '-short' : ''}-${startedAt.toISOString().slice(0, 10)}`;
    fs.mkdirSync(resultsDir, { recursive: true });
    fs.writeFileSync(path.join(resultsDir, `${name}.json`), `${JSON.stringify(report, null, 2)}\n`);
    await renderChaosChartPng(
      {
        title: `Disaster-recovery drill: region A lost under load, failover to B (${synchronous ? 'synchronous' : 'asynchronous'} standby${linkLatencyMs ? `, link +${linkLatencyMs} ms` : ''})`,
        subtitle: `${startedAt.toISOString().slice(0, 16).replace('T', ' ')} UTC · ${os.cpus().length} cores · ${report.workload.payouts} payouts, ${report.workload.deposits} deposits · RPO ${report.rpo.lost_transactions} transactions (${report.rpo.seconds} s) · RTO ${report.rto.first_payout_s} s, in flight settled ${report.rto.in_flight_settled_s} s · duplicated ${report.verdict.duplicated} · ${report.verdict.pass ? 'PASS' : 'FAIL'}`,
        heading: 'Requests each second through the loss of region A and the failover to B',
        perSecond: report.per_second,
        faults: report.timeline,
      },
      path.join(resultsDir, `${name}.png`),
    ).catch((err: unknown) => say(`chart not drawn: ${err instanceof Error ? err.message : String(err)}`));
    printReport(report);
    say(`saved ${path.relative(process.cwd(), path.join(resultsDir, name))}.json and .png`);
    process.exitCode = report.verdict.pass ? 0 : 1;
  } finally {
    await stopAll();
    if (process.exitCode === 0) fs.rmSync(root, { recursive: true, force: true });
    else say(`kept ${root} (logs of every process under region-a/logs, region-b/logs, provider)`);
  }
}

interface DrillContext {
  regionA: Stack;
  provider: Provider;
  standby: StandbyHandle;
  receiver: Awaited<ReturnType<typeof startOutboxReceiver>>;
  root: string;
  startedAt: Date;
  startB: () => Promise<Stack>;
  /** The replication link gone, at once (its proxy killed: nothing it holds back reaches B afterwards). */
  cutLink: () => void;
}

async function drill(ctx: DrillContext) {
  const { regionA, provider, standby, receiver } = ctx;
  const token = await signToken({ sub: 'dr-backend', role: 'service' }, regionA.config.AUTH_JWT_SECRET);
  const staff = await signToken({ sub: 'dr-staff', role: 'staff' }, regionA.config.AUTH_JWT_SECRET);
  // The clients know one address per API instance; B answers on the same ones once it is up.
  const client: ClientOptions = { apiUrls: regionA.apiUrls, token, attemptTimeoutMs: 5_000, giveUpAfterMs: 240_000 };
  const providerDb = new pg.Pool({ connectionString: provider.databaseUrl, max: 4 });
  const dbA = new pg.Pool({ connectionString: regionA.databaseUrl, max: 4 });
  dbA.on('error', () => undefined); // region A's database dies with it
  let dbB: pg.Pool | undefined;
  // The load and the watchers run until the drill ends, however it ends.
  let loadUntil = Number.POSITIVE_INFINITY;
  let sampling = true;
  let ended = false;
  try {
    // Accounts funded in A, each by one deposit, before the load.
    const planned = Math.ceil(rate * (beforeS + afterS + 90));
    const accounts = Array.from({ length: Math.ceil(planned / PAYOUTS_PER_ACCOUNT) }, (_, i) => `dr-${ctx.startedAt.getTime()}-${i}`);
    const funded = await fundAccounts(client, accounts, FUNDING_MINOR, async (deposits) => (await stillOpen(dbA, deposits)).length === 0);
    say(`${accounts.length} accounts funded in A; load starts`);

    // The load, open loop, across the disaster.
    const t0 = Date.now();
    const clock = (at = Date.now()) => Math.round(((at - t0) / 1000) * 10) / 10;
    const requests: Request[] = [];
    const bodies = new Map<string, unknown>();
    const inFlight: Promise<void>[] = [];
    const track = (request: Request, work: Promise<void>) =>
      inFlight.push(
        work.catch((err: unknown) => {
          request.harnessError = err instanceof Error ? err.message : String(err);
        }),
      );
    let payouts = 0;
    let deposits = 0;
    const sendNext = (i: number) => {
      if (i % 8 === 7) {
        const n = deposits++;
        const request = newDeposit(accounts[(n * 7) % accounts.length]!, n % 4 === 1, 5_000);
        requests.push(request);
        bodies.set(request.id, depositBody(request));
        track(
          request,
          (async () => {
            if (request.expected === 'FAILED') await scriptSandbox(provider.sandboxUrl, request.id, { scenario: 'fail' });
            const answer = await send(client, 'POST', '/v1/deposits', bodies.get(request.id), request.key, request.attempts);
            request.answer = answer ? { status: answer.status, at: Date.now(), ...(answer.json?.code ? { code: answer.json.code } : {}) } : undefined;
          })(),
        );
        return;
      }
      const n = payouts++;
      const scenario = PAYOUT_SCENARIOS[n % PAYOUT_SCENARIOS.length]!;
      const request = newPayout(accounts[n % accounts.length]!, scenario, 100 + ((n * 37) % 900));
      requests.push(request);
      bodies.set(request.id, payoutBody(request, scenario.walletId));
      track(
        request,
        (async () => {
          const answer = await send(client, 'POST', '/v1/payouts', bodies.get(request.id), request.key, request.attempts);
          request.answer = answer ? { status: answer.status, at: Date.now(), ...(answer.json?.code ? { code: answer.json.code } : {}) } : undefined;
        })(),
      );
    };
    const load = (async () => {
      for (let i = 0; Date.now() < loadUntil; i++) {
        const due = t0 + (i * 1000) / rate;
        if (due > Date.now()) await sleep(due - Date.now());
        sendNext(i);
      }
    })();

    // How far behind the standby is, as the primary sees it, each second until the kill.
    const lag: { at_s: number; lag_bytes: number | null; replay_lag_ms: number | null }[] = [];
    void (async () => {
      while (sampling) {
        const at = clock();
        const row = await standbyOnPrimary(regionA.databaseUrl).catch(() => undefined);
        if (sampling) lag.push({ at_s: at, lag_bytes: row?.lagBytes ?? null, replay_lag_ms: row?.replayLagMs ?? null });
        await sleep(1_000);
      }
    })();
    await sleep(t0 + beforeS * 1000 - Date.now());
    sampling = false;

    // The disaster: the link and every process of region A at once, in one synchronous step of SIGKILLs (the link's
    // proxy first, so nothing it held back reaches B after the kill).
    const killAt = Date.now();
    ctx.cutLink();
    const killed = killRegion(path.join(ctx.root, 'region-a'), regionA.launcherPid);
    const linkCutAt = Date.now();
    await waitUntil('region A dead', async () => allDead(Object.values(killed)), 10_000, 20);
    const deadAt = Date.now();
    // Taken once A is dead: whatever the receiver got until now came from A.
    const arrivalsBeforeKill = receiver.received.length;
    say(`${clock(killAt)} s: region A killed (${Object.keys(killed).join(', ')}); replication link cut`);
    // What B has of A: the last commit the standby replayed. Promotion first replays what it had received and not yet
    // applied, so that is read once it is promoted; the reading before shows how far behind the replay was.
    const beforePromotion = await standbyProgress(standby.url);
    await standby.promote();
    const promotedAt = Date.now();
    const standbyState = await standbyProgress(standby.url);
    say(`${clock(promotedAt)} s: standby promoted (it had received up to ${beforePromotion.received}; its last commit ${Math.round(killAt - standbyState.last_commit_ms)} ms before the kill, ${Math.round(killAt - beforePromotion.last_commit_ms)} ms as replayed before the promotion); starting region B`);
    const regionB = await ctx.startB();
    const bUpAt = Date.now();
    loadUntil = bUpAt + afterS * 1000;
    say(`${clock(bUpAt)} s: region B up (${regionB.apiUrls.join(', ')}), ${((bUpAt - killAt) / 1000).toFixed(1)} s after the kill`);
    dbB = new pg.Pool({ connectionString: regionB.databaseUrl, max: 4 });

    // The operator's backend asks B for everything it was told was accepted before the kill; what B does not
    // know is lost (the RPO) and is sent again with its Idempotency-Key (docs/disaster-recovery.md, runbook).
    // Answers that reached the clients before the promotion came from A (some arrive just after the SIGKILL).
    const ackedBeforeKill = requests.filter((r) => accepted(r) && r.answer!.at < promotedAt);
    // Kill → every saga accepted before the kill in its final state in B.
    let inFlightSettledAt: number | undefined;
    const watchInFlight = (async () => {
      while (!ended && Date.now() - killAt < (afterS + drainS + 120) * 1000) {
        if ((await stillOpen(dbB!, ackedBeforeKill).catch(() => ackedBeforeKill)).length === 0) {
          inFlightSettledAt = Date.now();
          return;
        }
        await sleep(1_000);
      }
    })();

    // Each account's listings first (B's read models: no saga is asked, so no history is replayed on B's cold
    // workers); each request they do not show is then asked for by id, and a 404 there is lost.
    const lookupStartedAt = Date.now();
    const listed = await listedByB(client, [...new Set(ackedBeforeKill.map((r) => r.accountId))], new Date(t0 - 60_000));
    const unlisted = ackedBeforeKill.filter((r) => !listed.has(r.id));
    const lost: Request[] = [];
    await eachConcurrently(unlisted, LOOKUP_CONCURRENCY, async (r) => {
      const found = await send(client, 'GET', `/v1/${r.kind === 'payout' ? 'payouts' : 'deposits'}/${r.id}`, undefined, undefined, []);
      if (found?.status === 404) lost.push(r);
      else if (found?.status !== 200) r.harnessError = `region B answered ${found?.status ?? 'nothing'} for ${r.id}`;
    });
    const lookupMs = Date.now() - lookupStartedAt;
    // Of those, the ones the provider had already been asked for: B knows nothing of them, so only A can have.
    const submittedBeforeKill = new Set(
      (
        await providerDb.query<{ reference: string }>(
          `SELECT DISTINCT split_part(reference, ':', 1) AS reference FROM ${DEFAULT_SANDBOX_SCHEMA}.resources WHERE split_part(reference, ':', 1) = ANY($1)`,
          [lost.map((r) => r.id)],
        )
      ).rows.map((row) => row.reference),
    );
    // The operator's backend sends each lost request again until B answers it, however long B takes to catch up.
    const replayClient: ClientOptions = { ...client, giveUpAfterMs: (afterS + drainS) * 1000 };
    const replays = await Promise.all(
      lost.map(async (r) => {
        const attempts: Request['attempts'] = [];
        const answer = await send(replayClient, 'POST', `/v1/${r.kind === 'payout' ? 'payouts' : 'deposits'}`, bodies.get(r.id), r.key, attempts);
        return { id: r.id, kind: r.kind, acked_at_s: clock(r.answer!.at), submitted_to_provider_before_kill: submittedBeforeKill.has(r.id), replay_status: answer?.status ?? null, replay_attempts: countBy(attempts, (a) => String(a.status)), replayed_at_s: clock() };
      }),
    );
    say(`${lost.length} of ${ackedBeforeKill.length} acknowledged before the kill not in B (${submittedBeforeKill.size} of them already at the provider; ${unlisted.length} not listed, looked up in ${lookupMs} ms); sent again with their keys`);

    // The runbook's reconciliation after a failover, as soon as the run's grace period has passed since the kill (it
    // leaves out settlements younger than that), while the load goes on: what the provider did that B has no record
    // of (`missing_in_ledger`: a return whose webhook A acknowledged and lost, say) is checked by the saga against the
    // provider's record, at staff's request (POST /v1/ops/payouts/{id}/poll).
    const platformB = { temporalAddress: regionB.temporalAddress, namespace: regionB.config.TEMPORAL_NAMESPACE, apiUrl: regionB.apiUrl, staffToken: staff };
    const reconciledAfterFailover = (async () => {
      await sleep(killAt + (DEFAULT_RECONCILIATION_GRACE_SECONDS + 15) * 1000 - Date.now());
      const run = await reconcile(platformB);
      const toPoll = [...new Set(((run.detail as { mismatches?: { kind: string; item_kind: string; reference: string }[] })?.mismatches ?? []).filter((m) => m.kind === 'missing_in_ledger' && m.item_kind === 'payout').map((m) => m.reference))];
      const polled = await Promise.all(
        toPoll.map(async (id) => ({ id, status: (await send({ ...client, apiUrls: regionB.apiUrls, token: staff }, 'POST', `/v1/ops/payouts/${id}/poll`, { reason: 'after failover: reconciliation found the provider ahead of the ledger' }, undefined, []))?.status ?? null })),
      );
      say(`${clock()} s: reconciliation after the failover ${run.status} ${JSON.stringify((run.detail as { by_kind?: unknown })?.by_kind)}; asked ${toPoll.length} saga(s) to poll the provider`);
      return { run, polled };
    })().then(
      (done) => ({ done }),
      (error: unknown) => ({ error }),
    );

    await load;
    say(`${requests.length} requests sent in ${clock()} s; waiting for the answers and for every saga to settle`);
    await Promise.all(inFlight);
    const drainStarted = Date.now();
    let open = await stillOpen(dbB, requests);
    const drain = async (untilMs: number) => {
      while (open.length > 0 && Date.now() < untilMs) {
        await sleep(2_000);
        open = await stillOpen(dbB!, requests);
      }
    };
    const afterFailoverOutcome = await reconciledAfterFailover;
    if ('error' in afterFailoverOutcome) throw afterFailoverOutcome.error;
    const { run: afterFailover, polled } = afterFailoverOutcome.done;
    await drain(drainStarted + drainS * 1000);
    await Promise.race([watchInFlight, sleep(5_000)]);
    say(`drained in ${((Date.now() - drainStarted) / 1000).toFixed(0)} s (${open.length} still open)`);

    // From outside: the clients' answers against B's read model and ledger and the provider's own record.
    const clientB: ClientOptions = { ...client, apiUrls: regionB.apiUrls };
    const money = await checkMoney(dbB, requests, { funded, balance: async (accountId) => (await send(clientB, 'GET', `/v1/accounts/${accountId}/balance`, undefined, undefined, []))!.json }, providerDb);
    const failures: Failure[] = [
      ...requests.filter((r) => r.harnessError).map((r) => ({ check: 'harness', id: r.id, detail: r.harnessError! })),
      ...open.map((r) => ({ check: 'not settled', id: r.id, detail: `${r.kind}/${r.scenario} still open ${(Date.now() - drainStarted) / 1000} s after the load` })),
      ...money.failures,
    ];
    const ledgerCheck = runLedgerCheck(regionB.databaseUrl);
    if (ledgerCheck.failure) failures.push(ledgerCheck.failure);
    const reconciliation = await reconcile(platformB);
    if (reconciliation.status !== 'clean') failures.push({ check: 'reconciliation', id: reconciliation.run_id ?? 'none', detail: JSON.stringify(reconciliation.detail).slice(0, 600) });
    const outbox = await checkOutboxSettled(dbB, ctx.startedAt, receiver.received, arrivalsBeforeKill);
    failures.push(...outbox.failures);
    if (receiver.badSignatures.length > 0) failures.push({ check: 'outbox signature', id: 'receiver', detail: `${receiver.badSignatures.length} deliveries with a bad signature` });
    // Events region A delivered that B never had: the downstream's share of the RPO (B makes its own for the replays).
    const knownToB = new Set((await dbB.query<{ event_id: string }>('SELECT event_id::text FROM outbox_events')).rows.map((r) => r.event_id));
    const deliveredOnlyByA = new Set(receiver.received.map((r) => r.eventId).filter((id) => !knownToB.has(id))).size;
    const redelivered = sameIdOtherContent(receiver.received, arrivalsBeforeKill);
    failures.push(...redelivered.failures);

    failures.sort((a, b) => SEVERITY.indexOf(a.check) - SEVERITY.indexOf(b.check));
    const duplicated = failures.filter((f) => f.check === 'submitted twice' || f.check === 'ledger movements').length;
    const lostAfterReplay = failures.filter((f) => f.check === 'lost' || f.check === 'not settled').length;
    const firstPayoutInB = requests.filter((r) => r.kind === 'payout' && accepted(r) && r.answer!.at > promotedAt).map((r) => r.answer!.at);
    const rpo = {
      lost_transactions: lost.length,
      lost_payouts: lost.filter((r) => r.kind === 'payout').length,
      lost_deposits: lost.filter((r) => r.kind === 'deposit').length,
      lost_already_submitted_to_provider: submittedBeforeKill.size,
      /** The kill minus the last commit B has of A (after promotion): whatever A committed in that window is lost. */
      seconds: Math.max(0, round1((killAt - standbyState.last_commit_ms) / 1000)),
      standby_last_commit_before_kill_ms: Math.round(killAt - standbyState.last_commit_ms),
      /** The same, read just before the promotion: what the standby had applied, not just received. */
      standby_last_replayed_before_promotion_ms: Math.round(killAt - beforePromotion.last_commit_ms),
      /** From the earliest lost acknowledgement to the kill (0 with none lost): the window the clients saw. */
      lost_acknowledgements_s: lost.length === 0 ? 0 : round1((killAt - Math.min(...lost.map((r) => r.answer!.at))) / 1000),
      acknowledged_before_kill: ackedBeforeKill.length,
      /** Runbook step 6's lookup: the accounts' listings, then each unlisted request by id. */
      lookup: { accounts: new Set(ackedBeforeKill.map((r) => r.accountId)).size, unlisted: unlisted.length, ms: lookupMs },
      lost: replays,
    };
    const rto = {
      region_b_up_s: round1((bUpAt - killAt) / 1000),
      promoted_s: round1((promotedAt - killAt) / 1000),
      /** How long the kill took: every SIGKILL sent (the link's proxy first), and every process of A seen dead. */
      region_a_dead_ms: deadAt - killAt,
      link_cut_ms: linkCutAt - killAt,
      first_payout_s: firstPayoutInB.length ? round1((Math.min(...firstPayoutInB) - killAt) / 1000) : null,
      in_flight_settled_s: inFlightSettledAt ? round1((inFlightSettledAt - killAt) / 1000) : null,
    };
    const targets = {
      rpo: synchronous ? { target: `${TARGETS.rpo_transactions_sync} transactions lost`, met: rpo.lost_transactions === 0 } : { target: `≤ ${TARGETS.rpo_s_async} s`, met: rpo.seconds <= TARGETS.rpo_s_async },
      rto_first_payout: { target: `≤ ${TARGETS.rto_first_payout_s} s`, met: rto.first_payout_s !== null && rto.first_payout_s <= TARGETS.rto_first_payout_s },
      rto_in_flight_settled: { target: `≤ ${TARGETS.rto_in_flight_settled_s} s`, met: rto.in_flight_settled_s !== null && rto.in_flight_settled_s <= TARGETS.rto_in_flight_settled_s },
      duplicates: { target: '0', met: duplicated === 0 },
    };
    const pass = failures.length === 0 && Object.values(targets).every((t) => t.met);
    return {
      date: ctx.startedAt.toISOString(),
      machine: { cores: os.cpus().length, cpu: os.cpus()[0]?.model, node: process.version },
      setup: {
        region_a: 'apps/launcher/main.ts --cluster as a child process, default settings (Temporal server on its PostgreSQL, 2 workers, 2 API instances, outbox publisher); sandboxes external (SANDBOX_EMBEDDED=false)',
        region_b: `a physical streaming standby of A's PostgreSQL (${synchronous ? 'synchronous' : 'asynchronous'}) over a Toxiproxy link${linkLatencyMs ? ` delayed ${linkLatencyMs} ms` : ''}; the same launcher and settings started on it after promotion, on A's addresses`,
        provider: 'both sandbox aggregators on their own PostgreSQL, outside both regions',
        killed: Object.keys(killed),
      },
      workload: {
        payouts: requests.filter((r) => r.kind === 'payout').length,
        deposits: requests.filter((r) => r.kind === 'deposit').length,
        accounts: accounts.length,
        rate_per_s: rate,
        before_kill_s: beforeS,
        after_b_up_s: afterS,
        answers: countBy(requests, (r) => (r.answer ? `${r.answer.status}${r.answer.code ? ` ${r.answer.code}` : ''}` : 'no answer')),
        requests_retried: requests.filter((r) => r.attempts.length > 1).length,
      },
      rpo,
      rto,
      targets,
      replication_lag: lag,
      outcomes: money.outcomes,
      reconciliation_after_failover: { status: afterFailover.status, by_kind: (afterFailover.detail as { by_kind?: unknown })?.by_kind ?? null, polled },
      reconciliation: { run_id: reconciliation.run_id, status: reconciliation.status },
      ledger_check: { exit: ledgerCheck.exit },
      outbox: { events_in_b: outbox.events, deliveries: outbox.deliveries, delivered_only_by_a: deliveredOnlyByA, ...redelivered.counts },
      verdict: { pass, lost_after_replay: lostAfterReplay, duplicated, failures: failures.slice(0, 200), failure_count: failures.length },
      timeline: [
        { kind: 'A killed → B up', at_s: clock(killAt), ended_s: clock(bUpAt) },
        ...(inFlightSettledAt ? [{ kind: 'in-flight sagas settling', at_s: clock(bUpAt), ended_s: clock(inFlightSettledAt) }] : []),
      ],
      per_second: perSecond(requests, t0),
    };
  } finally {
    loadUntil = 0;
    sampling = false;
    ended = true;
    await providerDb.end();
    await dbA.end().catch(() => undefined);
    await dbB?.end();
  }
}

const round1 = (v: number) => Math.round(v * 10) / 10;

/** The standby's row in A's pg_stat_replication, read on A directly (not over the replication link, which may be slow). */
async function standbyOnPrimary(primaryUrl: string) {
  return (await replicationStatus(primaryUrl)).find((row) => row.applicationName === STANDBY_NAME);
}

/**
 * Events delivered by A and again by B (a transfer B made again, or one B had whose delivery A never recorded): how
 * many, and of those which fields differ between A's last delivery and B's first (docs/disaster-recovery.md).
 */
function sameIdOtherContent(received: ReceivedEvent[], arrivalsFromA: number) {
  const fromA = new Map<string, Record<string, unknown>>();
  for (const r of received.slice(0, arrivalsFromA)) fromA.set(r.eventId, r.payload);
  const fields = new Map<string, number>();
  const seen = new Set<string>();
  const failures: Failure[] = [];
  let differing = 0;
  for (const r of received.slice(arrivalsFromA)) {
    const a = fromA.get(r.eventId);
    if (!a || seen.has(r.eventId)) continue;
    seen.add(r.eventId);
    const changed = changedPaths(a, r.payload);
    if (changed.length > 0) differing++;
    for (const path of changed) fields.set(path, (fields.get(path) ?? 0) + 1);
    const business = changed.filter((path) => !REGION_LOCAL_FIELDS.includes(path));
    if (business.length > 0) failures.push({ check: 'outbox event', id: r.eventId, detail: `delivered by A and by B with other ${business.join(', ')}` });
  }
  return { counts: { delivered_by_a_and_b: seen.size, delivered_by_b_with_other_content: differing, fields_differing: Object.fromEntries([...fields].sort()) }, failures };
}

/** What a transfer made again in B may change in its event: its ledger's own ids and when it happened. */
const REGION_LOCAL_FIELDS = ['occurred_at', 'transfer.id', 'transfer.pending_id', 'transfer.refund_of_id'];

/** The paths (`transfer.id`) whose values differ between two JSON objects. */
function changedPaths(a: unknown, b: unknown, prefix = ''): string[] {
  if (a !== null && b !== null && typeof a === 'object' && typeof b === 'object' && !Array.isArray(a) && !Array.isArray(b)) {
    const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
    return keys.flatMap((k) => changedPaths((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], prefix ? `${prefix}.${k}` : k));
  }
  return JSON.stringify(a) === JSON.stringify(b) ? [] : [prefix];
}

/** How far the standby got: the WAL it received and replayed, and the commit time of its last replayed transaction. */
async function standbyProgress(url: string) {
  const [row] = await queryOnce(url, `SELECT pg_last_wal_receive_lsn()::text AS received, pg_last_wal_replay_lsn()::text AS replayed, (extract(epoch FROM pg_last_xact_replay_timestamp()) * 1000)::float8 AS last_commit_ms`);
  const progress = row as { received: string | null; replayed: string; last_commit_ms: number | null };
  // NULL: the standby replayed no transaction since it started, so the drill has no RPO to read.
  if (progress.last_commit_ms === null) throw new Error(`the standby at ${url} has replayed no transaction of A`);
  return { ...progress, last_commit_ms: progress.last_commit_ms };
}

/** The payouts and deposits B lists for these accounts since `from` (GET /v1/accounts/{id}/payouts and /deposits, every page). */
async function listedByB(client: ClientOptions, accounts: string[], from: Date): Promise<Set<string>> {
  const listed = new Set<string>();
  await eachConcurrently(accounts, LOOKUP_CONCURRENCY, async (accountId) => {
    for (const kind of ['payouts', 'deposits'] as const) {
      let cursor: string | null = null;
      do {
        const query = new URLSearchParams({ from: from.toISOString(), limit: '100', ...(cursor ? { cursor } : {}) });
        const page = await send(client, 'GET', `/v1/accounts/${accountId}/${kind}?${query}`, undefined, undefined, []);
        if (page?.status !== 200) throw new Error(`region B answered ${page?.status ?? 'nothing'} for the ${kind} of ${accountId}`);
        for (const item of page.json.items as { payout_id?: string; deposit_id?: string }[]) listed.add((item.payout_id ?? item.deposit_id)!);
        cursor = page.json.next_cursor as string | null;
      } while (cursor);
    }
  });
  return listed;
}

/** `work` for every item, at most `limit` at a time. */
async function eachConcurrently<T>(items: T[], limit: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) await work(items[next++]!);
  }));
}

async function queryOnce(url: string, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query(sql)).rows;
  } finally {
    await client.end();
  }
}

function printReport(report: Awaited<ReturnType<typeof drill>>): void {
  const t = report.targets;
  const mark = (met: boolean) => (met ? 'met' : 'MISSED');
  const lines = [
    `\ndr:drill: ${report.workload.payouts} payouts, ${report.workload.deposits} deposits on ${report.workload.accounts} accounts; ${report.workload.requests_retried} requests retried by their client`,
    `  answers ${JSON.stringify(report.workload.answers)}`,
    `  RPO: ${report.rpo.seconds} s: the last commit B has of A is ${report.rpo.standby_last_commit_before_kill_ms} ms older than the kill (${report.rpo.standby_last_replayed_before_promotion_ms} ms as replayed before the promotion)  [${t.rpo.target}: ${mark(t.rpo.met)}]`,
    `       ${report.rpo.lost_transactions} of ${report.rpo.acknowledged_before_kill} acknowledged transactions lost (${report.rpo.lost_payouts} payouts, ${report.rpo.lost_deposits} deposits), acknowledged in the last ${report.rpo.lost_acknowledgements_s} s before the kill`,
    `       ${report.rpo.lost_already_submitted_to_provider} of them had reached the provider; all sent again with their keys, answered ${JSON.stringify(countBy(report.rpo.lost, (l) => String(l.replay_status)))}`,
    ...report.rpo.lost.slice(0, 20).map((l) => `       lost ${l.kind} ${l.id}, acknowledged at ${l.acked_at_s} s${l.submitted_to_provider_before_kill ? ', already at the provider' : ''}`),
    `  RTO: region A dead ${report.rto.region_a_dead_ms} ms (link cut ${report.rto.link_cut_ms} ms), standby promoted ${report.rto.promoted_s} s, region B up ${report.rto.region_b_up_s} s, first payout accepted by B ${report.rto.first_payout_s} s [${t.rto_first_payout.target}: ${mark(t.rto_first_payout.met)}], every saga in flight at the kill settled ${report.rto.in_flight_settled_s} s [${t.rto_in_flight_settled.target}: ${mark(t.rto_in_flight_settled.met)}]`,
    ...Object.entries(report.outcomes).map(([scenario, counts]) => `  ${scenario.padEnd(42)} ${JSON.stringify(counts)}`),
    `  reconciliation ${DEFAULT_RECONCILIATION_GRACE_SECONDS + 15} s after the kill ${report.reconciliation_after_failover.status} ${JSON.stringify(report.reconciliation_after_failover.by_kind)}; ${report.reconciliation_after_failover.polled.length} saga(s) asked to poll their provider`,
    `  reconciliation at the end ${report.reconciliation.status}; ledger:check exit ${report.ledger_check.exit}; outbox ${report.outbox.events_in_b} events in B, ${report.outbox.deliveries} deliveries, ${report.outbox.delivered_only_by_a} delivered by A only; ${report.outbox.delivered_by_a_and_b} delivered by A and again by B, ${report.outbox.delivered_by_b_with_other_content} of them with other content ${JSON.stringify(report.outbox.fields_differing)}`,
    `  verdict: ${report.verdict.pass ? 'PASS' : 'FAIL'}: duplicated ${report.verdict.duplicated} [${mark(t.duplicates.met)}], lost after the replay ${report.verdict.lost_after_replay}, ${report.verdict.failure_count} failure(s)`,
    ...report.verdict.failures.slice(0, 20).map((f) => `    FAIL ${f.check}: ${f.id}: ${f.detail}`),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

main()
  .catch((err: unknown) => {
    process.stderr.write(`[dr] ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 2;
  })
  // A drill that failed midway still has clients retrying (for up to 4 minutes): its verdict is already printed.
  .finally(() => process.exit(process.exitCode ?? 0));
