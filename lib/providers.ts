/**
 * The payment providers the platform pays out through, and the routing rules that choose among them. Pure:
 * read by the configuration (checked at start), the API (a payout's planned route) and the worker.
 */
import { CURRENCY_CODES } from '../ledger/currency';
import { PAYOUT_METHODS, type PayoutMethod } from '../contracts/payout';
import { limitInMinorUnits, type LimitRates } from './limits';

/** One provider connection: where it is, how its webhooks are signed, and what it accepts. */
export interface ProviderConnection {
  name: string;
  url: string;
  apiToken?: string;
  webhookSecret: string;
  methods: readonly PayoutMethod[];
  currencies: readonly string[];
}

const SANDBOX_B_SCHEMA = 'sandbox_aggregator_b';

/** Deposits are taken through this provider (routing applies to payouts). */
export const DEPOSIT_PROVIDER = 'sandbox';

interface ProviderSettings {
  SANDBOX_URL: string;
  SANDBOX_API_TOKEN?: string | undefined;
  SANDBOX_WEBHOOK_SECRET: string;
  SANDBOX_METHODS: PayoutMethod[];
  SANDBOX_CURRENCIES: string[];
  SANDBOX_B_URL: string;
  SANDBOX_B_API_TOKEN?: string | undefined;
  SANDBOX_B_WEBHOOK_SECRET: string;
  SANDBOX_B_METHODS: PayoutMethod[];
  SANDBOX_B_CURRENCIES: string[];
}

/** Every provider connection configured: two sandbox aggregator instances, `sandbox` and `sandbox-b`. */
export function providerConnections(config: ProviderSettings): ProviderConnection[] {
  const token = (value: string | undefined) => (value ? { apiToken: value } : {});
  return [
    { name: 'sandbox', url: config.SANDBOX_URL, ...token(config.SANDBOX_API_TOKEN), webhookSecret: config.SANDBOX_WEBHOOK_SECRET, methods: config.SANDBOX_METHODS, currencies: config.SANDBOX_CURRENCIES },
    { name: 'sandbox-b', url: config.SANDBOX_B_URL, ...token(config.SANDBOX_B_API_TOKEN), webhookSecret: config.SANDBOX_B_WEBHOOK_SECRET, methods: config.SANDBOX_B_METHODS, currencies: config.SANDBOX_B_CURRENCIES },
  ];
}

/** A routing rule: the payouts it matches, and its providers in order of preference. */
export interface RouteRule {
  text: string;
  methods?: PayoutMethod[];
  currencies?: string[];
  /** Bound on the amount, EUR-equivalent major units. */
  amount?: { op: '<=' | '<' | '>' | '>='; eurMajor: number };
  providers: string[];
}

/** Parses PAYOUT_ROUTES (`card,ewallet -> sandbox-b, sandbox; * -> sandbox`): syntax only, names checked later. */
export function parseRoutes(text: string): { rules: RouteRule[] } | { problems: string[] } {
  const problems: string[] = [];
  const rules: RouteRule[] = [];
  for (const raw of text.split(';').map((r) => r.trim()).filter((r) => r !== '')) {
    const arrow = raw.indexOf('->');
    if (arrow === -1) {
      problems.push(`"${raw}": a rule is "<conditions> -> <providers>"`);
      continue;
    }
    const providers = raw.slice(arrow + 2).split(',').map((p) => p.trim()).filter((p) => p !== '');
    const rule: RouteRule = { text: raw, providers };
    if (providers.length === 0) problems.push(`"${raw}": names no provider`);
    if (new Set(providers).size !== providers.length) problems.push(`"${raw}": names a provider twice`);
    for (const condition of raw.slice(0, arrow).trim().split(/\s+/).filter((c) => c !== '')) {
      if (condition === '*') continue;
      const amount = /^amount(<=|<|>=|>)(\d+(?:\.\d+)?)$/.exec(condition);
      if (amount) {
        if (rule.amount) problems.push(`"${raw}": one amount condition per rule`);
        rule.amount = { op: amount[1] as NonNullable<RouteRule['amount']>['op'], eurMajor: Number(amount[2]) };
        continue;
      }
      if (condition.startsWith('currency=')) {
        const codes = condition.slice('currency='.length).split(',').filter((c) => c !== '');
        for (const code of codes) if (!CURRENCY_CODES.includes(code)) problems.push(`"${raw}": ${code} is not a known currency`);
        rule.currencies = codes;
        continue;
      }
      const methods = condition.replace(/^method=/, '').split(',').filter((m) => m !== '');
      const unknown = methods.filter((m) => !(PAYOUT_METHODS as readonly string[]).includes(m));
      if (unknown.length > 0) problems.push(`"${raw}": "${condition}" is not a condition (*, methods ${PAYOUT_METHODS.join('|')}, currency=..., amount<=N)`);
      else rule.methods = methods as PayoutMethod[];
    }
    rules.push(rule);
  }
  if (rules.length === 0 && problems.length === 0) problems.push('no rule');
  return problems.length > 0 ? { problems } : { rules };
}

/** What routing looks at: the destination method, the currency and the amount. */
export interface RoutedPayout {
  method: PayoutMethod;
  currency: string;
  amountMinor: number;
}

function matches(rule: RouteRule, payout: RoutedPayout, rates: LimitRates): boolean {
  if (rule.methods && !rule.methods.includes(payout.method)) return false;
  if (rule.currencies && !rule.currencies.includes(payout.currency)) return false;
  if (rule.amount) {
    const bound = limitInMinorUnits(rule.amount.eurMajor, payout.currency, rates);
    const a = payout.amountMinor;
    const { op } = rule.amount;
    if (!(op === '<=' ? a <= bound : op === '<' ? a < bound : op === '>' ? a > bound : a >= bound)) return false;
  }
  return true;
}

export const accepts = (connection: ProviderConnection, payout: Pick<RoutedPayout, 'method' | 'currency'>) =>
  connection.methods.includes(payout.method) && connection.currencies.includes(payout.currency);

/**
 * A payout's route: the providers of the first matching rule that accept its method and currency, in the
 * rule's order (the first is where it goes, the others its fallbacks). A rule none of whose providers accept
 * the payout is passed over for the next. Empty: no provider takes this payout.
 */
export function routeOf(rules: readonly RouteRule[], connections: readonly ProviderConnection[], payout: RoutedPayout, rates: LimitRates): string[] {
  const byName = new Map(connections.map((c) => [c.name, c]));
  for (const rule of rules) {
    if (!matches(rule, payout, rates)) continue;
    const route = rule.providers.filter((name) => {
      const connection = byName.get(name);
      return connection !== undefined && accepts(connection, payout);
    });
    if (route.length > 0) return route;
  }
  return [];
}

/**
 * The start-time check of the rules against the connections: every provider named exists, and every method
 * and currency some provider accepts has a route at every amount (checked at 1 minor unit, at each amount
 * bound and just past it, and at the largest amount).
 */
export function checkRoutes(rules: readonly RouteRule[], connections: readonly ProviderConnection[], rates: LimitRates): string[] {
  const known = new Set(connections.map((c) => c.name));
  const problems: string[] = [];
  for (const rule of rules) for (const name of rule.providers) if (!known.has(name)) problems.push(`"${rule.text}": unknown provider ${name} (known: ${[...known].join(', ')})`);
  if (problems.length > 0) return problems;
  for (const method of PAYOUT_METHODS) {
    const unrouted: string[] = [];
    for (const currency of CURRENCY_CODES) {
      if (!connections.some((c) => accepts(c, { method, currency }))) continue;
      const bounds = rules.flatMap((r) => (r.amount ? [limitInMinorUnits(r.amount.eurMajor, currency, rates)] : []));
      const amounts = [1, Number.MAX_SAFE_INTEGER, ...bounds.flatMap((b) => [b, b + 1])];
      const at = amounts.find((amountMinor) => routeOf(rules, connections, { method, currency, amountMinor }, rates).length === 0);
      if (at !== undefined) unrouted.push(at === 1 ? currency : `${currency} (from ${at} minor units)`);
    }
    if (unrouted.length > 0) {
      const shown = unrouted.length > 6 ? `${unrouted.slice(0, 6).join(', ')} and ${unrouted.length - 6} more` : unrouted.join(', ');
      problems.push(`no route for ${method} payouts in ${shown}, though a provider accepts them`);
    }
  }
  return problems;
}

/**
 * The environment of provider `sandbox-b`'s process: the sandbox aggregator reads SANDBOX_*, so its own
 * settings (SANDBOX_B_*) are passed under those names.
 */
export function sandboxBProcessEnv(config: ProviderSettings & { SANDBOX_B_PORT: number; SANDBOX_B_WEBHOOK_URL: string }): Record<string, string | undefined> {
  return {
    SANDBOX_PORT: String(config.SANDBOX_B_PORT),
    SANDBOX_URL: config.SANDBOX_B_URL,
    SANDBOX_WEBHOOK_SECRET: config.SANDBOX_B_WEBHOOK_SECRET,
    SANDBOX_WEBHOOK_URL: config.SANDBOX_B_WEBHOOK_URL,
    SANDBOX_API_TOKEN: config.SANDBOX_B_API_TOKEN,
    SANDBOX_METHODS: config.SANDBOX_B_METHODS.join(','),
    SANDBOX_CURRENCIES: config.SANDBOX_B_CURRENCIES.join(','),
    SANDBOX_SCHEMA: SANDBOX_B_SCHEMA,
  };
}
