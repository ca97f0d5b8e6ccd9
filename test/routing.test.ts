import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, settings } from '../lib/config';
import { checkRoutes, parseRoutes, providerConnections, routeOf, sandboxBProcessEnv } from '../lib/providers';

const problemsOf = (env: Record<string, string>) => {
  try {
    loadConfig(env);
    return [];
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    return err.problems.map((p) => `${p.setting}: ${p.message}`);
  }
};

describe('payout routes (PAYOUT_ROUTES)', () => {
  const config = loadConfig({});
  const connections = providerConnections(config);
  const route = (rules: string, method: 'card' | 'ewallet' | 'bank_transfer', currency: string, amountMinor: number) => {
    const parsed = parseRoutes(rules);
    if (!('rules' in parsed)) throw new Error(parsed.problems.join('; '));
    return routeOf(parsed.rules, connections, { method, currency, amountMinor }, config.LIMIT_CURRENCY_RATES);
  };

  it('by default sends cards and e-wallets to sandbox-b (sandbox the fallback) and bank transfers to sandbox', () => {
    expect(settings.PAYOUT_ROUTES.default).toBe('card,ewallet -> sandbox-b, sandbox; * -> sandbox, sandbox-b');
    expect(route(settings.PAYOUT_ROUTES.default!, 'card', 'EUR', 100)).toEqual(['sandbox-b', 'sandbox']);
    expect(route(settings.PAYOUT_ROUTES.default!, 'ewallet', 'GBP', 100)).toEqual(['sandbox-b', 'sandbox']);
    // sandbox-b takes no bank transfers and no yen: it is skipped.
    expect(route(settings.PAYOUT_ROUTES.default!, 'bank_transfer', 'EUR', 100)).toEqual(['sandbox']);
    expect(route(settings.PAYOUT_ROUTES.default!, 'card', 'JPY', 100)).toEqual(['sandbox']);
  });

  it('matches by method, currency and amount (EUR-equivalent), first matching rule first', () => {
    const rules = 'card currency=GBP amount>500 -> sandbox; card amount<=500 -> sandbox-b, sandbox; * -> sandbox';
    expect(route(rules, 'card', 'GBP', 60_000)).toEqual(['sandbox']);
    expect(route(rules, 'card', 'EUR', 50_000)).toEqual(['sandbox-b', 'sandbox']);
    expect(route(rules, 'card', 'EUR', 50_001)).toEqual(['sandbox']);
    // 500 EUR-equivalent in USD (LIMIT_CURRENCY_RATES): above it, the catch-all.
    const usdBound = Math.round(500 * config.LIMIT_CURRENCY_RATES.USD! * 100);
    expect(route(rules, 'card', 'USD', usdBound)).toEqual(['sandbox-b', 'sandbox']);
    expect(route(rules, 'card', 'USD', usdBound + 1)).toEqual(['sandbox']);
  });

  it('passes over a rule none of whose providers takes the payout', () => {
    expect(route('bank_transfer -> sandbox-b; * -> sandbox', 'bank_transfer', 'EUR', 100)).toEqual(['sandbox']);
  });

  it('is checked at start: syntax, known providers, and a route for everything some provider accepts', () => {
    expect(problemsOf({ PAYOUT_ROUTES: 'card -> sandbox-b; * -> sandbox' })).toEqual([]);
    expect(problemsOf({ PAYOUT_ROUTES: 'card sandbox-b' })[0]).toMatch(/^PAYOUT_ROUTES: .*a rule is "<conditions> -> <providers>"/);
    expect(problemsOf({ PAYOUT_ROUTES: 'card -> acme; * -> sandbox' })).toEqual(['PAYOUT_ROUTES: "card -> acme": unknown provider acme (known: sandbox, sandbox-b)']);
    expect(problemsOf({ PAYOUT_ROUTES: 'cheque -> sandbox' })[0]).toMatch(/"cheque" is not a condition/);
    expect(problemsOf({ PAYOUT_ROUTES: 'currency=XXY -> sandbox' })[0]).toMatch(/XXY is not a known currency/);
    expect(problemsOf({ PAYOUT_ROUTES: 'card -> sandbox, sandbox' })[0]).toMatch(/names a provider twice/);
    // Bank transfers are accepted by sandbox but no rule sends them anywhere.
    expect(problemsOf({ PAYOUT_ROUTES: 'card,ewallet -> sandbox-b, sandbox' })).toEqual([
      expect.stringMatching(/^PAYOUT_ROUTES: no route for bank_transfer payouts in AED, .* and \d+ more, though a provider accepts them$/),
    ]);
    // An amount bound leaves large cards without a route.
    expect(problemsOf({ PAYOUT_ROUTES: 'amount<=1000 -> sandbox' })[0]).toMatch(/no route for bank_transfer payouts in .*\(from \d+ minor units\)/);
    expect(checkRoutes((parseRoutes('* -> sandbox') as { rules: never[] }).rules, connections, config.LIMIT_CURRENCY_RATES)).toEqual([]);
  });

  it('reads each provider connection: its URL, secret, methods and currencies', () => {
    const custom = providerConnections(loadConfig({ SANDBOX_B_URL: 'http://psp-b.internal:8080', SANDBOX_B_METHODS: 'card', SANDBOX_B_CURRENCIES: 'SEK,NOK', SANDBOX_B_WEBHOOK_SECRET: 'another-secret-of-b-0123' }));
    expect(custom.map((c) => ({ name: c.name, url: c.url, methods: c.methods, currencies: c.currencies.length, secret: c.webhookSecret }))).toEqual([
      { name: 'sandbox', url: 'http://127.0.0.1:4010', methods: ['bank_transfer', 'card', 'ewallet'], currencies: connections[0]!.currencies.length, secret: settings.SANDBOX_WEBHOOK_SECRET.default },
      { name: 'sandbox-b', url: 'http://psp-b.internal:8080', methods: ['card'], currencies: 2, secret: 'another-secret-of-b-0123' },
    ]);
    expect(problemsOf({ SANDBOX_B_METHODS: 'card,cheque' })[0]).toMatch(/^SANDBOX_B_METHODS:/);
    expect(problemsOf({ SANDBOX_B_CURRENCIES: 'EUR,XXY' })[0]).toMatch(/^SANDBOX_B_CURRENCIES:/);
  });

  it('refuses one webhook secret for both providers, except in a provider process (which reads its own secret as SANDBOX_WEBHOOK_SECRET)', () => {
    expect(problemsOf({ SANDBOX_WEBHOOK_SECRET: 'one-secret-for-both-0123', SANDBOX_B_WEBHOOK_SECRET: 'one-secret-for-both-0123' })).toEqual(['SANDBOX_B_WEBHOOK_SECRET: must differ from SANDBOX_WEBHOOK_SECRET']);
    const b = sandboxBProcessEnv(loadConfig({}));
    expect(() => loadConfig(b as Record<string, string>, { asProvider: true })).not.toThrow();
  });

  it("refuses sandbox-b's development webhook secret in production", () => {
    const production = { NODE_ENV: 'production', AUTH_JWT_SECRET: 'x'.repeat(40), SANDBOX_WEBHOOK_SECRET: 'prod-secret-of-sandbox-a', OUTBOX_WEBHOOK_SECRET: 'prod-outbox-secret-000', DESTINATION_KEYS: `k1:${Buffer.alloc(32, 7).toString('base64')}` };
    expect(problemsOf(production)).toEqual(['SANDBOX_B_WEBHOOK_SECRET: the dev default is refused in production']);
    expect(problemsOf({ ...production, SANDBOX_B_WEBHOOK_SECRET: 'prod-secret-of-sandbox-b' })).toEqual([]);
  });
});
