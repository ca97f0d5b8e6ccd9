import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { SyntaxNode } from '@lezer/common';
import { parser } from '@prometheus-io/lezer-promql';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { z } from 'zod';
import { ApiMetrics } from '../../apps/api/metrics/metrics';
import { repoRoot } from '../../lib/config';
import { createPool } from '../../lib/db';
import { freePort, sleep, waitUntil } from '../../lib/wait';
import { uniqueId } from '../support';
import { depositRequest, payoutRequest, spawnWorkerProcess, startSagaStack, type SagaStack } from '../support/saga-stack';

/**
 * deploy/grafana/payout-platform.json and deploy/prometheus/alerts.yml are only worth something if they read
 * metrics that exist: every expression is parsed with Prometheus' own PromQL grammar (lezer-promql, as the
 * Prometheus UI uses it) and every metric it names is looked up in the live /metrics of a real API and a
 * real worker process, after traffic that creates the lazily registered series.
 */

const DASHBOARD = path.join(repoRoot, 'deploy/grafana/payout-platform.json');
const ALERTS = path.join(repoRoot, 'deploy/prometheus/alerts.yml');
const PROMETHEUS = path.join(repoRoot, 'deploy/prometheus/prometheus.yml');
const RUNBOOK = path.join(repoRoot, 'docs/runbook.md');

/** The runbook's sections alerts link to; process-down (ApiDown) is the one docs/runbook.md does not have yet. */
const RUNBOOK_ANCHORS = ['provider-outage', 'temporal-down', 'postgres-down', 'ledger-invariant', 'reconciliation-mismatches', 'dead-letters', 'stuck-saga', 'secret-rotation'];
const PENDING_ANCHORS = ['process-down'];

/** Series Prometheus makes itself for every target (not in any /metrics): their `job` must be a job of prometheus.yml. */
const SYNTHETIC = new Set(['up']);

// --- PromQL ---------------------------------------------------------------------------------------------------

/** Grafana's interval variables, replaced by a duration so the expression is plain PromQL. */
const withoutGrafanaVariables = (expr: string) => expr.replace(/\$__(rate_interval|interval|range)\b|\$\{__(rate_interval|interval|range)\}/g, '5m');

const stringValue = (literal: string) => (literal.startsWith('"') ? (JSON.parse(literal) as string) : literal.slice(1, -1));

interface Selector {
  name: string;
  /** Label matchers other than __name__: label → [op, value]. */
  matchers: Map<string, [string, string]>;
}

interface ParsedExpr {
  selectors: Selector[];
  /** Text around each error node (⚠) the grammar left in the tree. */
  errors: string[];
}

function children(node: SyntaxNode): SyntaxNode[] {
  const out: SyntaxNode[] = [];
  for (let child = node.firstChild; child; child = child.nextSibling) out.push(child);
  return out;
}

/** The vector selectors of an expression (metric name, by identifier or `__name__` matcher) and its syntax errors. */
function parsePromQL(expr: string): ParsedExpr {
  const text = withoutGrafanaVariables(expr);
  const tree = parser.parse(text);
  const selectors: Selector[] = [];
  const errors: string[] = [];
  const source = (n: SyntaxNode) => text.slice(n.from, n.to);
  tree.iterate({
    enter: (ref) => {
      if (ref.type.isError) errors.push(`at ${ref.from}: …${text.slice(Math.max(0, ref.from - 20), ref.to + 20)}…`);
      if (ref.name !== 'VectorSelector') return;
      const node = ref.node;
      let name = '';
      const matchers = new Map<string, [string, string]>();
      for (const child of children(node)) {
        if (child.name === 'Identifier') name = source(child);
        if (child.name !== 'LabelMatchers') continue;
        for (const matcher of children(child)) {
          const parts = children(matcher);
          const literal = parts.filter((p) => p.name === 'StringLiteral');
          if (matcher.name === 'QuotedLabelMatcher' && parts.length === 1 && literal.length === 1) {
            name = stringValue(source(literal[0]!)); // {"metric.name"}
            continue;
          }
          const label = parts.find((p) => p.name === 'LabelName' || p.name === 'QuotedLabelName');
          const op = parts.find((p) => p.name === 'MatchOp');
          if (!label || !op || literal.length !== 1) continue;
          const labelName = label.name === 'QuotedLabelName' ? stringValue(source(label)) : source(label);
          const value = stringValue(source(literal[0]!));
          if (labelName === '__name__' && source(op) === '=') name = value;
          else matchers.set(labelName, [source(op), value]);
        }
      }
      selectors.push({ name, matchers });
    },
  });
  return { selectors, errors };
}

// --- /metrics -------------------------------------------------------------------------------------------------

/**
 * The series names a scrape of this exposition stores: each sample's name, and for families declared with
 * `# TYPE` but without samples yet (a labelled prom-client counter never incremented), the names their samples
 * will have (histogram/summary `_bucket`/`_sum`/`_count`). A counter is read by the name its samples carry:
 * prom-client declares `…_total`, the Temporal SDK's exporter none, so `payout_provider_calls_total` is refused.
 */
function exportedSeriesNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    const type = /^# TYPE (\S+) (\S+)/.exec(line);
    if (type) {
      const [, family, kind] = type as unknown as [string, string, string];
      if (kind === 'histogram' || kind === 'summary') for (const suffix of ['_bucket', '_sum', '_count', ...(kind === 'summary' ? [''] : [])]) names.add(family + suffix);
      else names.add(family); // a counter's samples are named as declared (prom-client), or family_total (OpenMetrics: from the samples)
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (sample) names.add(sample[1]!);
  }
  return names;
}

/** What is wrong with one expression: syntax errors, no metric at all, unexported metrics, `up` of unknown jobs. */
function problemsOf(where: string, expr: string, exported: Set<string>, jobs: Set<string>): string[] {
  const { selectors, errors } = parsePromQL(expr);
  const problems = errors.map((e) => `${where}: PromQL syntax error ${e}`);
  if (selectors.length === 0) problems.push(`${where}: reads no metric`);
  for (const { name, matchers } of selectors) {
    if (!name) problems.push(`${where}: a selector without a metric name`);
    else if (SYNTHETIC.has(name)) {
      const job = matchers.get('job');
      const named = job ? (job[0] === '=~' ? job[1].split('|') : [job[1]]) : [];
      if (named.length === 0) problems.push(`${where}: ${name} without a job matcher`);
      for (const j of named) if (!jobs.has(j)) problems.push(`${where}: ${name}{job="${j}"}: no such job in prometheus.yml`);
    } else if (!exported.has(name)) problems.push(`${where}: ${name} is exported by neither the API nor the worker`);
  }
  return problems;
}

// --- the files ------------------------------------------------------------------------------------------------

const duration = z.string().regex(/^(\d+(ms|[smhdwy]))+$/, 'a Prometheus duration such as 5m');
const alertRule = z
  .object({
    alert: z.string().regex(/^[A-Z][A-Za-z0-9]*$/),
    expr: z.string().min(1),
    for: duration,
    keep_firing_for: duration.optional(),
    labels: z.object({ severity: z.enum(['page', 'warning']) }).catchall(z.string()),
    annotations: z
      .object({
        summary: z.string().min(1),
        description: z.string().min(1),
        runbook_url: z.string().regex(/^docs\/runbook\.md#[a-z0-9-]+$/),
      })
      .catchall(z.string()),
  })
  .strict();
const ruleFile = z.object({ groups: z.array(z.object({ name: z.string().min(1), interval: duration.optional(), rules: z.array(alertRule).min(1) }).strict()).min(1) }).strict();
type RuleFile = z.infer<typeof ruleFile>;

const datasourceRef = z.object({ type: z.literal('prometheus'), uid: z.literal('${datasource}') });
const gridPos = z.object({ h: z.number().int().positive(), w: z.number().int().min(1).max(24), x: z.number().int().min(0).max(23), y: z.number().int().min(0) });
const target = z.object({ refId: z.string().min(1), expr: z.string().min(1), datasource: datasourceRef, legendFormat: z.string().optional() }).passthrough();
const rowPanel = z.object({ id: z.number().int(), type: z.literal('row'), title: z.string().min(1), gridPos, collapsed: z.boolean().optional(), panels: z.array(z.unknown()).optional() }).passthrough();
const queryPanel = z.object({ id: z.number().int(), type: z.enum(['timeseries', 'stat', 'gauge', 'bargauge', 'table', 'state-timeline']), title: z.string().min(1), gridPos, datasource: datasourceRef, targets: z.array(target).min(1) }).passthrough();
const dashboardSchema = z
  .object({
    uid: z.string().regex(/^[a-z0-9-]{1,40}$/),
    title: z.string().min(1),
    schemaVersion: z.number().int().min(36).max(41),
    templating: z.object({ list: z.array(z.object({ name: z.string(), type: z.string(), query: z.unknown() }).passthrough()) }),
    panels: z.array(z.union([rowPanel, queryPanel])).min(1),
  })
  .passthrough();
type Dashboard = z.infer<typeof dashboardSchema>;
type QueryPanel = z.infer<typeof queryPanel>;

const loadRules = (file = ALERTS): RuleFile => ruleFile.parse(parse(fs.readFileSync(file, 'utf8')));
const loadDashboard = (): Dashboard => dashboardSchema.parse(JSON.parse(fs.readFileSync(DASHBOARD, 'utf8')));
/** Query panels, those of collapsed rows included. */
const queryPanels = (dashboard: Dashboard): QueryPanel[] =>
  dashboard.panels.flatMap((p) => (p.type === 'row' ? ((p as z.infer<typeof rowPanel>).panels ?? []).map((inner) => queryPanel.parse(inner)) : [p as QueryPanel]));
const prometheusJobs = (): Set<string> => {
  const config = parse(fs.readFileSync(PROMETHEUS, 'utf8')) as { rule_files?: string[]; scrape_configs?: { job_name: string }[] };
  return new Set((config.scrape_configs ?? []).map((s) => s.job_name));
};
const allExprs = (): { where: string; expr: string }[] => [
  ...queryPanels(loadDashboard()).flatMap((p) => p.targets.map((t) => ({ where: `dashboard panel "${p.title}" ${t.refId}`, expr: t.expr }))),
  ...loadRules().groups.flatMap((g) => g.rules.map((r) => ({ where: `alert ${r.alert}`, expr: r.expr }))),
];

// --- the live stack -------------------------------------------------------------------------------------------

/** A TCP relay to Temporal for the worker, which the test cuts to make Temporal unreachable for it alone. */
async function temporalRelay(target: string) {
  const at = target.lastIndexOf(':');
  const [host, port] = [target.slice(0, at), Number(target.slice(at + 1))];
  const listenPort = await freePort();
  const sockets = new Set<net.Socket>();
  let server: net.Server | undefined;
  const open = () =>
    new Promise<void>((resolve, reject) => {
      if (server?.listening) return resolve();
      server = net.createServer((client) => {
        const upstream = net.connect(port, host);
        for (const s of [client, upstream]) {
          sockets.add(s);
          s.on('error', () => undefined);
          s.on('close', () => (client.destroy(), upstream.destroy(), sockets.delete(s)));
        }
        client.pipe(upstream).pipe(client);
      });
      server.once('error', reject);
      server.listen(listenPort, '127.0.0.1', () => resolve());
    });
  const cut = () =>
    new Promise<void>((resolve) => {
      server!.close(() => resolve());
      for (const s of sockets) s.destroy();
    });
  await open();
  return { address: `127.0.0.1:${listenPort}`, open, cut };
}

describe('the Grafana dashboard and the Prometheus alerts read only metrics the live API and worker export', () => {
  let stack: SagaStack;
  let worker: Awaited<ReturnType<typeof spawnWorkerProcess>> | undefined;
  let relay: Awaited<ReturnType<typeof temporalRelay>>;
  let apiText = '';
  let workerText = '';
  let exported: Set<string>;

  beforeAll(async () => {
    stack = await startSagaStack({}, { worker: false });
    relay = await temporalRelay(stack.config.TEMPORAL_ADDRESS);
    worker = await spawnWorkerProcess(stack, { TEMPORAL_ADDRESS: relay.address, WORKER_HEALTH_ADDRESS: '127.0.0.1:0', WORKFLOW_TASK_FAILURE_RECHECK_MS: '1000' });
    await worker.ready;
    const scrapeWorker = async () => (await fetch(worker!.metricsUrl)).text();

    // A payout the provider calls back twice (webhook and duplicate), its replay, a key mismatch, an unsigned webhook.
    const accountId = await stack.fundedAccount(10_000);
    const key = uniqueId('key');
    const payout = await stack.postPayout(payoutRequest(accountId, 100, 'sandbox:duplicate_callback'), key);
    expect(payout.status).toBe(201);
    await stack.postPayout(payoutRequest(accountId, 100, 'sandbox:duplicate_callback'), key);
    await stack.postPayout(payoutRequest(accountId, 101, 'sandbox:duplicate_callback'), key);
    await fetch(`${stack.apiUrl}/v1/webhooks/sandbox`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    const deposit = await stack.postDeposit(depositRequest(accountId, 500), uniqueId('dep'));
    expect(deposit.status).toBe(201);
    await stack.waitForStatus(payout.json.payout_id, ['SETTLED']);

    // A workflow task failure (the SDK counts it only once one happens): a deposit signalled a null event.
    const broken = await stack.postDeposit(depositRequest(accountId, 700), uniqueId('dep'));
    expect(broken.status).toBe(201);
    const brokenId = broken.json.deposit_id as string;
    await stack.temporal.workflow.getHandle(brokenId).signal('depositProviderEvent', null);
    await waitUntil('temporal_workflow_task_execution_failed exported', async () => /^temporal_workflow_task_execution_failed\{[^}]*workflow_type="depositSaga"/m.test(await scrapeWorker()), 20_000);
    const marked = async () => ((await stack.pool.query('SELECT 1 FROM workflow_task_failures WHERE workflow_id = $1', [brokenId])).rowCount ?? 0) > 0;
    await waitUntil('the deposit marked for staff', marked, 20_000);
    await stack.temporal.workflow.getHandle(brokenId).terminate('dashboards test: task failure provoked');
    await waitUntil('the closed deposit unmarked', async () => !(await marked()), 20_000);

    // Temporal unreachable for the worker (what TemporalUnreachable reads), then back.
    await relay.cut();
    await waitUntil('failed polls counted', async () => /^temporal_long_request_failure\{/m.test(await scrapeWorker()), 20_000);
    await relay.open();
    const after = await stack.postPayout(payoutRequest(accountId, 100), uniqueId('key'));
    await stack.waitForStatus(after.json.payout_id, ['SETTLED'], 60_000);
    await sleep(500); // the duplicate callback of the first payout follows its first delivery

    apiText = await (await fetch(`${stack.apiUrl}/metrics`)).text();
    workerText = await scrapeWorker();
    exported = new Set([...exportedSeriesNames(apiText), ...exportedSeriesNames(workerText)]);
  });
  afterAll(async () => {
    await relay?.open(); // when a failure left it cut, so the worker can stop cleanly
    worker?.child.kill('SIGTERM');
    await stack?.assertLedgerClean();
    await stack?.close();
  });

  it('every dashboard and alert expression parses as PromQL, with no error node', () => {
    const exprs = allExprs();
    expect(exprs.length).toBeGreaterThan(40);
    const errors = exprs.flatMap(({ where, expr }) => parsePromQL(expr).errors.map((e) => `${where}: ${e}`));
    expect(errors).toEqual([]);
  });

  it('every metric they name is exported by the live API or worker, and up{job} names a scraped job', () => {
    const jobs = prometheusJobs();
    const problems = allExprs().flatMap(({ where, expr }) => problemsOf(where, expr, exported, jobs));
    expect(problems).toEqual([]);
    // The figures the rules that matter most read, with values that mean what the rules take them to mean.
    expect(apiText).toMatch(/^dependency_up\{[^}]*dependency="postgres"[^}]*\} 1$/m);
    expect(apiText).toMatch(/^reconciliation_mismatches\{[^}]*kind="ledger_invariant"[^}]*\} \d+$/m);
    expect(apiText).toMatch(/^webhook_duplicates_total\{[^}]*provider="sandbox"[^}]*\} [1-9]/m);
    expect(apiText).toMatch(/^http_request_duration_seconds_count\{[^}]*route="\/v1\/webhooks\/:provider"[^}]*\} [1-9]/m);
    expect(workerText).toMatch(/^temporal_long_request_failure\{[^}]*\} [1-9]/m);
    expect(workerText).toMatch(/^temporal_workflow_task_execution_failed\{[^}]*workflow_type="depositSaga"[^}]*\} [1-9]/m);
    expect(workerText).toMatch(/^payout_provider_breaker_state\{[^}]*provider="sandbox"[^}]*\} 0$/m);
    expect(workerText).toMatch(/^temporal_worker_task_slots_available\{[^}]*task_queue="[^"]+-background"/m);
  });

  it('the check bites: a made-up metric, a bad __name__, a syntax error and an unknown job are each reported', () => {
    const jobs = prometheusJobs();
    const fake = { groups: [{ name: 'fake', rules: [{ alert: 'Fake', expr: 'sum(rate(payout_nonexistent_total[5m])) > 0', for: '5m', labels: { severity: 'page' }, annotations: { summary: 's', description: 'd', runbook_url: 'docs/runbook.md#stuck-saga' } }] }] };
    const rules = ruleFile.parse(fake);
    const reported = rules.groups.flatMap((g) => g.rules.flatMap((r) => problemsOf(`alert ${r.alert}`, r.expr, exported, jobs)));
    expect(reported).toEqual(['alert Fake: payout_nonexistent_total is exported by neither the API nor the worker']);
    expect(problemsOf('x', '{__name__="payout_nonexistent_total", provider="sandbox"}', exported, jobs)).toEqual(['x: payout_nonexistent_total is exported by neither the API nor the worker']);
    expect(problemsOf('x', 'histogram_quantile(0.99, sum by (le) (rate(payout_nonexistent_seconds_bucket[$__rate_interval])))', exported, jobs)).toHaveLength(1);
    expect(problemsOf('x', 'sum(rate(http_problems_total[5m]', exported, jobs).some((p) => p.includes('syntax error'))).toBe(true);
    expect(problemsOf('x', 'up{job="payout-nowhere"} == 0', exported, jobs)).toEqual(['x: up{job="payout-nowhere"}: no such job in prometheus.yml']);
    // The Temporal SDK's counters carry no _total suffix: a query adding one reads nothing.
    expect(problemsOf('x', 'rate(payout_provider_calls_total[5m])', exported, jobs)).toEqual(['x: payout_provider_calls_total is exported by neither the API nor the worker']);
    // …while the real names pass, bucket and _total forms included.
    expect(problemsOf('x', 'sum(rate(http_request_duration_seconds_bucket[5m])) + sum(rate(http_problems_total[5m])) + sum(payout_provider_calls)', exported, jobs)).toEqual([]);
    // A rule file missing what this one requires is refused by the schema.
    expect(ruleFile.safeParse({ groups: [{ name: 'g', rules: [{ alert: 'NoFor', expr: 'up == 0', labels: { severity: 'page' }, annotations: { summary: 's', description: 'd', runbook_url: 'docs/runbook.md#stuck-saga' } }] }] }).success).toBe(false);
  });

  it('a PostgreSQL the API cannot reach shows as dependency_up 0 (what PostgresUnreachable reads)', async () => {
    const deadPool = createPool(`postgres://nobody:nothing@127.0.0.1:${await freePort()}/none`, 1);
    try {
      const text = await new ApiMetrics(deadPool).render();
      expect(text).toMatch(/^dependency_up\{[^}]*dependency="postgres"[^}]*\} 0$/m);
    } finally {
      await deadPool.end();
    }
  });

  it('the alert rules have the structure Prometheus loads, link the runbook, and cover the money path', () => {
    const rules = loadRules();
    const all = rules.groups.flatMap((g) => g.rules);
    const names = all.map((r) => r.alert);
    expect(new Set(names).size).toBe(names.length);
    expect(new Set(rules.groups.map((g) => g.name)).size).toBe(rules.groups.length);
    expect(names).toEqual(
      expect.arrayContaining([
        'ApiErrorRateHigh', 'AcceptLatencyP99High', 'TemporalUnreachable', 'PostgresUnreachable', 'WorkerNotPolling',
        'LedgerInvariantViolated', 'WorkerSelfCheckFailing', 'ReconciliationMismatches', 'OutboxDeadLetters', 'OutboxLagGrowing',
        'PayoutsStuck', 'ProviderBreakerOpen', 'ProviderCallsFailing', 'WorkflowTaskFailed', 'SagasStoppedByFailingWorkflowTask',
        'WorkerSlotsExhausted', 'WorkerTaskScheduleToStartHigh',
      ]),
    );
    // Every alert the runbook names exists here.
    const runbook = fs.readFileSync(RUNBOOK, 'utf8');
    const namedInRunbook = [...runbook.matchAll(/\*\*Alerts?:\*\*([^\n]*)/g)].flatMap((m) => [...m[1]!.matchAll(/`([A-Z][A-Za-z0-9]+)`/g)].map((n) => n[1]!));
    expect(namedInRunbook.length).toBeGreaterThan(10);
    expect(names).toEqual(expect.arrayContaining(namedInRunbook));
    // Every runbook_url is a section of the runbook (or the one still to write), and every section has an alert.
    const documented = new Set([...runbook.matchAll(/<a id="([a-z0-9-]+)"><\/a>/g)].map((m) => m[1]!));
    expect([...documented]).toEqual(expect.arrayContaining(RUNBOOK_ANCHORS));
    const used = new Set(all.map((r) => r.annotations.runbook_url.split('#')[1]!));
    for (const anchor of used) expect([...documented, ...PENDING_ANCHORS], anchor).toContain(anchor);
    for (const anchor of RUNBOOK_ANCHORS) expect([...used], anchor).toContain(anchor);
    // prometheus.yml loads this file and scrapes the jobs the rules select on.
    const config = parse(fs.readFileSync(PROMETHEUS, 'utf8')) as { rule_files: string[]; scrape_configs: { job_name: string }[] };
    expect(config.rule_files).toContain('alerts.yml');
    expect([...prometheusJobs()]).toEqual(expect.arrayContaining(['payout-api', 'payout-worker']));
  });

  it('the dashboard is importable: a ${datasource} variable every panel and target uses, unique ids, panels on the grid', () => {
    const dashboard = loadDashboard();
    expect(dashboard.templating.list).toEqual(expect.arrayContaining([expect.objectContaining({ name: 'datasource', type: 'datasource', query: 'prometheus' })]));
    const ids = dashboard.panels.map((p) => p.id);
    expect(new Set(ids).size).toBe(ids.length);
    const panels = queryPanels(dashboard);
    for (const p of panels) {
      expect(p.gridPos.x + p.gridPos.w, p.title).toBeLessThanOrEqual(24);
      const refIds = p.targets.map((t) => t.refId);
      expect(new Set(refIds).size, p.title).toBe(refIds.length);
    }
    // No two panels overlap on the grid.
    const cells = new Map<string, string>();
    for (const p of dashboard.panels)
      for (let y = p.gridPos.y; y < p.gridPos.y + p.gridPos.h; y++)
        for (let x = p.gridPos.x; x < p.gridPos.x + p.gridPos.w; x++) {
          expect(cells.get(`${x},${y}`), `${p.title} overlaps`).toBeUndefined();
          cells.set(`${x},${y}`, p.title);
        }
    // It shows what the money path needs: each of these is read by some panel.
    const read = new Set(panels.flatMap((p) => p.targets.flatMap((t) => parsePromQL(t.expr).selectors.map((s) => s.name))));
    expect([...read]).toEqual(
      expect.arrayContaining([
        'http_request_duration_seconds_count', 'http_request_duration_seconds_bucket', 'http_problems_total', 'saga_decision_seconds_bucket',
        'payouts_by_status', 'deposits_by_status', 'payouts_stuck', 'webhook_signature_failures_total', 'webhook_duplicates_total',
        'outbox_oldest_pending_age_seconds', 'outbox_pending_events', 'outbox_dead_letters', 'reconciliation_mismatches',
        'payout_provider_calls', 'payout_provider_call_latency_bucket', 'payout_provider_breaker_state',
        'temporal_workflow_task_schedule_to_start_latency_bucket', 'temporal_activity_schedule_to_start_latency_bucket',
        'temporal_workflow_task_execution_latency_bucket', 'temporal_activity_execution_latency_bucket', 'temporal_worker_task_slots_available',
        'process_resident_memory_bytes', 'process_cpu_seconds_total',
      ]),
    );
  });

  it('promtool (Prometheus\'s own checker) accepts the rules and the configuration', () => {
    // As the browser test needs Chromium: .ci/run installs Debian's prometheus package when promtool is missing.
    const promtool = process.env.PROMTOOL_PATH ?? 'promtool';
    const version = spawnSync(promtool, ['--version'], { encoding: 'utf8' });
    expect(version.error, 'promtool is needed: install it (sudo apt-get install prometheus) or set PROMTOOL_PATH').toBeUndefined();
    for (const args of [['check', 'rules', ALERTS], ['check', 'config', PROMETHEUS]]) {
      const run = spawnSync(promtool, args, { encoding: 'utf8' });
      expect(run.status, `promtool ${args.join(' ')}\n${run.stdout}${run.stderr}`).toBe(0);
    }
  });
});
