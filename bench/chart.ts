/**
 * The benchmark's charts, drawn as SVG and screenshotted to PNG by headless Chromium (playwright-core):
 * the ladder's accept latency (p50, p99) and settled per second against the offered rate, platform and
 * reference; the soak's accept latency, settled per second and worker memory against minutes into the run.
 */
import fs from 'node:fs';
import { chromium } from 'playwright-core';

export interface ChartStep {
  offered_per_s: number;
  settled_per_s: number;
  accept_ms: { p50: number | null; p99: number | null };
}

export interface ChartInput {
  title: string;
  subtitle: string;
  series: { name: string; color: string; steps: ChartStep[] }[];
}

const W = 560;
const H = 380;
const M = { left: 64, right: 16, top: 40, bottom: 48 };

/** A polyline with a dot per point; a guide line (`guide`) has no dots. */
type Line = { color: string; dash?: string; points: [number, number][]; label: string; guide?: boolean };

function panel(title: string, xMax: number, yMax: number, xLabel: string, yLabel: string, yLog: boolean, lines: Line[], diagonal: boolean): string {
  const innerW = W - M.left - M.right;
  const innerH = H - M.top - M.bottom;
  const yMin = yLog ? 10 : 0;
  const x = (v: number) => M.left + (v / xMax) * innerW;
  const y = (v: number) => (yLog ? M.top + innerH - ((Math.log10(Math.max(v, yMin)) - Math.log10(yMin)) / (Math.log10(yMax) - Math.log10(yMin))) * innerH : M.top + innerH - (v / yMax) * innerH);
  const xTicks = niceTicks(xMax);
  const yTicks = yLog ? [10, 30, 100, 300, 1000, 3000, 10000, 30000, 100000].filter((t) => t <= yMax) : niceTicks(yMax);
  const fmt = (v: number) => (v >= 1000 ? `${v / 1000}k` : String(v));
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">`;
  svg += `<text x="${M.left}" y="22" font-size="15" font-weight="bold">${title}</text>`;
  for (const t of yTicks) svg += `<line x1="${M.left}" x2="${W - M.right}" y1="${y(t)}" y2="${y(t)}" stroke="#e5e5e5"/><text x="${M.left - 6}" y="${y(t) + 4}" text-anchor="end">${fmt(t)}</text>`;
  for (const t of xTicks) svg += `<line y1="${M.top}" y2="${M.top + innerH}" x1="${x(t)}" x2="${x(t)}" stroke="#f0f0f0"/><text x="${x(t)}" y="${M.top + innerH + 16}" text-anchor="middle">${t}</text>`;
  svg += `<rect x="${M.left}" y="${M.top}" width="${innerW}" height="${innerH}" fill="none" stroke="#999"/>`;
  svg += `<text x="${M.left + innerW / 2}" y="${H - 10}" text-anchor="middle">${xLabel}</text>`;
  svg += `<text transform="translate(16 ${M.top + innerH / 2}) rotate(-90)" text-anchor="middle">${yLabel}</text>`;
  if (diagonal) svg += `<line x1="${x(0)}" y1="${y(0)}" x2="${x(Math.min(xMax, yMax))}" y2="${y(Math.min(xMax, yMax))}" stroke="#bbb" stroke-dasharray="2 4"/><text x="${x(Math.min(xMax, yMax)) - 4}" y="${y(Math.min(xMax, yMax)) + 14}" text-anchor="end" fill="#999">= offered</text>`;
  lines.forEach((line, i) => {
    const pts = line.points.map(([px, py]) => `${x(px).toFixed(1)},${y(py).toFixed(1)}`).join(' ');
    svg += `<polyline points="${pts}" fill="none" stroke="${line.color}" stroke-width="2.5" ${line.dash ? `stroke-dasharray="${line.dash}"` : ''}/>`;
    if (!line.guide) for (const [px, py] of line.points) svg += `<circle cx="${x(px)}" cy="${y(py)}" r="3.5" fill="${line.color}"/>`;
    const ly = M.top + 14 + i * 16;
    svg += `<line x1="${M.left + 10}" x2="${M.left + 34}" y1="${ly - 4}" y2="${ly - 4}" stroke="${line.color}" stroke-width="2.5" ${line.dash ? `stroke-dasharray="${line.dash}"` : ''}/><text x="${M.left + 40}" y="${ly}">${line.label}</text>`;
  });
  return `${svg}</svg>`;
}

function niceTicks(max: number): number[] {
  const step = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000].find((s) => max / s <= 8) ?? 10000;
  return Array.from({ length: Math.floor(max / step) + 1 }, (_, i) => i * step);
}

const OFFERED_RATE = 'offered rate (requests per second)';

function page(title: string, subtitle: string, panels: string[]): string {
  return `<!doctype html><html><head><meta charset="utf-8"><style>body{margin:0;padding:12px 16px;font-family:sans-serif;background:#fff;width:${panels.length * W + (panels.length - 1) * 16}px}h1{font-size:18px;margin:0 0 2px}p{margin:0 0 8px;color:#555;font-size:13px}</style></head>
<body><h1>${title}</h1><p>${subtitle}</p><div style="display:flex;gap:16px">${panels.join('')}</div></body></html>`;
}

export function chartHtml(input: ChartInput): string {
  const all = input.series.flatMap((s) => s.steps);
  const xMax = Math.max(...all.map((s) => s.offered_per_s)) * 1.05;
  const latMax = Math.max(100, ...all.flatMap((s) => [s.accept_ms.p99 ?? 0, s.accept_ms.p50 ?? 0])) * 1.3;
  const rateMax = Math.max(1, ...all.map((s) => Math.max(s.settled_per_s, s.offered_per_s))) * 1.1;
  const latency = panel(
    'Accept latency (POST → answer)',
    xMax,
    latMax,
    OFFERED_RATE,
    'milliseconds (log scale)',
    true,
    input.series.flatMap((s) => [
      { color: s.color, points: s.steps.filter((p) => p.accept_ms.p50 !== null).map((p) => [p.offered_per_s, p.accept_ms.p50!] as [number, number]), label: `${s.name} p50` },
      { color: s.color, dash: '6 4', points: s.steps.filter((p) => p.accept_ms.p99 !== null).map((p) => [p.offered_per_s, p.accept_ms.p99!] as [number, number]), label: `${s.name} p99` },
    ]),
    false,
  );
  const throughput = panel(
    'Settled per second (sustained)',
    xMax,
    rateMax,
    OFFERED_RATE,
    'sagas settled per second',
    false,
    input.series.map((s) => ({ color: s.color, points: s.steps.map((p) => [p.offered_per_s, p.settled_per_s] as [number, number]), label: s.name })),
    true,
  );
  return page(input.title, input.subtitle, [latency, throughput]);
}

export interface SoakChartInput {
  title: string;
  subtitle: string;
  offeredPerS: number;
  /** One point per window, at the minute it closed. */
  windows: { minute: number; accept_ms: { p50: number | null; p99: number | null }; settled_per_s: number; worker_rss_mib: number | null }[];
  /** The worker's memory when the first window opened (drawn at minute 0). */
  workerRssAtStartMib: number | null;
}

export function soakChartHtml(input: SoakChartInput): string {
  const ws = input.windows;
  const xMax = Math.max(...ws.map((w) => w.minute)) * 1.05;
  const xLabel = 'minutes into the run (each point: the window ending there)';
  const at = (value: (w: (typeof ws)[number]) => number | null) => ws.filter((w) => value(w) !== null).map((w) => [w.minute, value(w)!] as [number, number]);
  const latMax = Math.max(100, ...ws.flatMap((w) => [w.accept_ms.p99 ?? 0, w.accept_ms.p50 ?? 0])) * 1.3;
  const latency = panel('Accept latency (POST → answer)', xMax, latMax, xLabel, 'milliseconds (log scale)', true, [
    { color: '#1f6feb', points: at((w) => w.accept_ms.p50), label: 'p50' },
    { color: '#1f6feb', dash: '6 4', points: at((w) => w.accept_ms.p99), label: 'p99' },
  ], false);
  const rateMax = Math.max(1, input.offeredPerS, ...ws.map((w) => w.settled_per_s)) * 1.25;
  const throughput = panel('Settled per second (in each window)', xMax, rateMax, xLabel, 'payouts settled per second', false, [
    { color: '#1f6feb', points: at((w) => w.settled_per_s), label: 'settled/s' },
    { color: '#999', dash: '2 4', points: [[0, input.offeredPerS], [xMax, input.offeredPerS]], label: `offered ${input.offeredPerS}/s`, guide: true },
  ], false);
  const rss = [...(input.workerRssAtStartMib !== null ? [[0, input.workerRssAtStartMib] as [number, number]] : []), ...at((w) => w.worker_rss_mib)];
  const memory = panel('Worker resident memory', xMax, Math.max(100, ...rss.map(([, y]) => y)) * 1.25, xLabel, 'MiB', false, [{ color: '#2f9e44', points: rss, label: 'worker RSS' }], false);
  return page(input.title, input.subtitle, [latency, throughput, memory]);
}

export interface OverloadChartInput {
  title: string;
  subtitle: string;
  perSecond: { second: number; requests: number; admitted: number; refused: number; admitted_accept_p99_ms: number | null; refused_accept_p99_ms: number | null }[];
}

/** The overload run second by second: what was offered, admitted and refused, and how fast each was answered. */
export function overloadChartHtml(input: OverloadChartInput): string {
  const ps = input.perSecond;
  const xMax = Math.max(1, ps.length) * 1.02;
  const xLabel = 'seconds into the overload';
  const rateMax = Math.max(1, ...ps.map((p) => p.requests)) * 1.25;
  const rates = panel('Requests per second, by answer', xMax, rateMax, xLabel, 'requests per second', false, [
    { color: '#999', points: ps.map((p) => [p.second, p.requests]), label: 'offered' },
    { color: '#1f6feb', points: ps.map((p) => [p.second, p.admitted]), label: 'admitted (201/202)' },
    { color: '#e8590c', points: ps.map((p) => [p.second, p.refused]), label: 'refused (429 + Retry-After)' },
  ], false);
  const at = (v: (p: (typeof ps)[number]) => number | null) => ps.filter((p) => v(p) !== null).map((p) => [p.second, v(p)!] as [number, number]);
  const latMax = Math.max(1000, ...ps.flatMap((p) => [p.admitted_accept_p99_ms ?? 0, p.refused_accept_p99_ms ?? 0])) * 1.3;
  const latency = panel('Answer latency p99, per second', xMax, latMax, xLabel, 'milliseconds (log scale)', true, [
    { color: '#1f6feb', points: at((p) => p.admitted_accept_p99_ms), label: 'admitted' },
    { color: '#e8590c', points: at((p) => p.refused_accept_p99_ms), label: 'refused' },
    { color: '#999', dash: '2 4', points: [[0, 300], [xMax, 300]], label: 'target for admitted: 300 ms', guide: true },
  ], false);
  return page(input.title, input.subtitle, [rates, latency]);
}

export function renderOverloadChartPng(input: OverloadChartInput, pngPath: string): Promise<void> {
  return screenshot(overloadChartHtml(input), 2, pngPath);
}

export function renderChartPng(input: ChartInput, pngPath: string): Promise<void> {
  return screenshot(chartHtml(input), 2, pngPath);
}

export function renderSoakChartPng(input: SoakChartInput, pngPath: string): Promise<void> {
  return screenshot(soakChartHtml(input), 3, pngPath);
}

export interface ChaosChartInput {
  title: string;
  subtitle: string;
  /** Above the plot (default: the chaos run's). */
  heading?: string;
  perSecond: { second: number; accepted: number; retried: number }[];
  faults: { kind: string; at_s: number; ended_s: number }[];
}

/** The chaos run's timeline: requests accepted and attempts that had to be retried, each second, faults as bands. */
export function chaosChartHtml(input: ChaosChartInput): string {
  const width = 2 * W + 16;
  const height = H + 60;
  const m = { left: 64, right: 16, top: 40, bottom: 110 };
  const innerW = width - m.left - m.right;
  const innerH = height - m.top - m.bottom;
  const xMax = Math.max(10, ...input.perSecond.map((p) => p.second), ...input.faults.map((f) => f.ended_s)) * 1.01;
  const yMax = Math.max(4, ...input.perSecond.flatMap((p) => [p.accepted, p.retried])) * 1.2;
  const x = (v: number) => m.left + (v / xMax) * innerW;
  const y = (v: number) => m.top + innerH - (v / yMax) * innerH;
  let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`;
  svg += `<text x="${m.left}" y="22" font-size="15" font-weight="bold">${input.heading ?? 'Requests each second, with the faults inflicted'}</text>`;
  // Labels where there is room: in a long run the schedule repeats, and its first round names the kinds.
  let lastLabelX = -Infinity;
  input.faults.forEach((f, i) => {
    const x0 = x(f.at_s);
    const w = Math.max(2, x(f.ended_s) - x0);
    svg += `<rect x="${x0}" y="${m.top}" width="${w}" height="${innerH}" fill="${i % 2 ? '#fde2e2' : '#fff0d6'}"/>`;
    if (x0 - lastLabelX < 15) return;
    lastLabelX = x0;
    svg += `<text transform="translate(${x0 + 3} ${m.top + innerH + 22}) rotate(40)" font-size="11" fill="#a33">${f.kind}</text>`;
  });
  for (const t of niceTicks(yMax)) svg += `<line x1="${m.left}" x2="${width - m.right}" y1="${y(t)}" y2="${y(t)}" stroke="#e5e5e5"/><text x="${m.left - 6}" y="${y(t) + 4}" text-anchor="end">${t}</text>`;
  for (const t of niceTicks(xMax)) svg += `<text x="${x(t)}" y="${m.top + innerH + 14}" text-anchor="middle" fill="#555">${t}</text>`;
  svg += `<rect x="${m.left}" y="${m.top}" width="${innerW}" height="${innerH}" fill="none" stroke="#999"/>`;
  svg += `<text x="${m.left + innerW / 2}" y="${height - 8}" text-anchor="middle">seconds into the run</text>`;
  svg += `<text transform="translate(16 ${m.top + innerH / 2}) rotate(-90)" text-anchor="middle">per second</text>`;
  const lines: [string, string, (p: ChaosChartInput['perSecond'][number]) => number][] = [
    ['#1f6feb', 'accepted (201/202)', (p) => p.accepted],
    ['#e8590c', 'attempts retried (timeout, reset, 5xx, 429)', (p) => p.retried],
  ];
  lines.forEach(([color, label, value], i) => {
    svg += `<polyline points="${input.perSecond.map((p) => `${x(p.second).toFixed(1)},${y(value(p)).toFixed(1)}`).join(' ')}" fill="none" stroke="${color}" stroke-width="1.8"/>`;
    const ly = m.top + 14 + i * 16;
    svg += `<line x1="${m.left + 10}" x2="${m.left + 34}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2.5"/><text x="${m.left + 40}" y="${ly}">${label}</text>`;
  });
  svg += '</svg>';
  return page(input.title, input.subtitle, [svg]).replace(`width:${W}px`, `width:${width}px`);
}

export async function renderChaosChartPng(input: ChaosChartInput, pngPath: string): Promise<void> {
  await screenshot(chaosChartHtml(input), 2, pngPath);
}

/** Debian's Chromium (apt-get install chromium), or the browser named by CHROMIUM_PATH (as test/browser does). */
async function screenshot(html: string, panels: number, pngPath: string): Promise<void> {
  const executablePath = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
  if (!fs.existsSync(executablePath)) throw new Error(`no Chromium at ${executablePath} (apt-get install chromium, or set CHROMIUM_PATH)`);
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  try {
    const tab = await browser.newPage({ viewport: { width: panels * W + (panels - 1) * 16 + 32, height: H + 80 }, deviceScaleFactor: 1.5 });
    await tab.setContent(html);
    await tab.locator('body').screenshot({ path: pngPath });
  } finally {
    await browser.close();
  }
}
