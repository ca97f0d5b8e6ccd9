import { CURRENCY_CODES, currencyExponent, formatMinorUnits } from '../ledger/currency';

/**
 * Money limits are set once in EUR-equivalent major units (PAYOUT_MAX_AMOUNT, DEPOSIT_MAX_AMOUNT, ...)
 * and converted per currency with a table of how many major units of each currency are worth about one
 * EUR, so a cap means the same value in BHD as in JPY (≈ 400× apart in major units). The rates are for
 * risk limits, not for pricing: round, slow-moving figures an operator reviews now and then and
 * overrides with LIMIT_CURRENCY_RATES (e.g. `JPY:160,ARS:1500`).
 */
export const DEFAULT_LIMIT_RATES: Readonly<Record<string, number>> = Object.freeze({
  AED: 4, AFN: 77, ALL: 98, AMD: 420, ANG: 1.9, AOA: 1000, ARS: 1300, AUD: 1.7, AWG: 1.9, AZN: 1.8,
  BAM: 1.96, BBD: 2.2, BDT: 130, BGN: 1.96, BHD: 0.41, BIF: 3200, BMD: 1.1, BND: 1.45, BOB: 7.5, BOV: 3,
  BRL: 6, BSD: 1.1, BTN: 93, BWP: 15, BYN: 3.6, BZD: 2.2,
  CAD: 1.5, CDF: 3100, CHE: 0.95, CHF: 0.95, CHW: 0.95, CLF: 0.027, CLP: 1000, CNY: 7.8, COP: 4500, COU: 12,
  CRC: 560, CUP: 26, CVE: 110, CZK: 25,
  DJF: 190, DKK: 7.46, DOP: 65, DZD: 145,
  EGP: 53, ERN: 16, ETB: 140, EUR: 1,
  FJD: 2.5, FKP: 0.85,
  GBP: 0.85, GEL: 3, GHS: 16, GIP: 0.85, GMD: 78, GNF: 9400, GTQ: 8.4, GYD: 230,
  HKD: 8.5, HNL: 28, HTG: 145, HUF: 400,
  IDR: 17500, ILS: 4, INR: 93, IQD: 1420, IRR: 1000000, ISK: 150,
  JMD: 170, JOD: 0.77, JPY: 160,
  KES: 140, KGS: 95, KHR: 4400, KMF: 490, KPW: 990, KRW: 1500, KWD: 0.33, KYD: 0.9, KZT: 560,
  LAK: 23000, LBP: 97000, LKR: 330, LRD: 210, LSL: 20, LYD: 6,
  MAD: 10.8, MDL: 19.5, MGA: 5000, MKD: 61.5, MMK: 4000, MNT: 3800, MOP: 8.8, MRU: 43, MUR: 50, MVR: 17,
  MWK: 1900, MXN: 21, MXV: 2.5, MYR: 4.9, MZN: 70,
  NAD: 20, NGN: 1700, NIO: 40, NOK: 11.7, NPR: 150, NZD: 1.85,
  OMR: 0.42,
  PAB: 1.1, PEN: 4, PGK: 4.4, PHP: 63, PKR: 310, PLN: 4.3, PYG: 8500,
  QAR: 4,
  RON: 5, RSD: 117, RUB: 95, RWF: 1550,
  SAR: 4.1, SBD: 9.2, SCR: 15.5, SDG: 650, SEK: 11.3, SGD: 1.45, SHP: 0.85, SLE: 25, SLL: 25000, SOS: 630,
  SRD: 40, SSP: 5000, STN: 24.5, SVC: 9.6, SYP: 14000, SZL: 20,
  THB: 37, TJS: 11.5, TMT: 3.8, TND: 3.35, TOP: 2.6, TRY: 45, TTD: 7.4, TWD: 35, TZS: 2900,
  UAH: 46, UGX: 4000, USD: 1.1, USN: 1.1, UYI: 7.5, UYU: 45, UYW: 27, UZS: 14000,
  VED: 100, VES: 100, VND: 28000, VUV: 130,
  WST: 3,
  XAF: 656, XCD: 2.95, XCG: 1.95, XOF: 656, XPF: 119,
  YER: 270,
  ZAR: 20, ZMW: 28, ZWG: 29, ZWL: 30000,
});

const missing = CURRENCY_CODES.filter((code) => !(code in DEFAULT_LIMIT_RATES));
if (missing.length > 0) throw new Error(`limits: no default rate for ${missing.join(', ')}`);

/** Major units of each currency worth about one EUR, for every known currency. */
export type LimitRates = Readonly<Record<string, number>>;

/**
 * Parses LIMIT_CURRENCY_RATES (`CUR:rate,...`, empty for the defaults) over the default table. Returns the
 * problems (each naming its currency or entry) instead of the table when any entry is bad.
 */
export function parseLimitRates(text: string): { rates: LimitRates } | { problems: string[] } {
  const rates: Record<string, number> = { ...DEFAULT_LIMIT_RATES };
  const problems: string[] = [];
  for (const entry of text.split(',').map((e) => e.trim()).filter((e) => e !== '')) {
    const match = /^([A-Z]{3}):(\d+(?:\.\d+)?)$/.exec(entry);
    if (!match) {
      problems.push(`"${entry}" is not CUR:rate (e.g. JPY:160)`);
      continue;
    }
    const [, code = '', rate = ''] = match;
    if (currencyExponent(code) === undefined) problems.push(`${code} is not a known currency`);
    else if (!(Number(rate) > 0)) problems.push(`${code}: the rate must be a positive number, got ${rate}`);
    else rates[code] = Number(rate);
  }
  return problems.length > 0 ? { problems } : { rates: Object.freeze(rates) };
}

/** A limit set in EUR-equivalent major units, in integer minor units of `currency` (at most a safe integer). */
export function limitInMinorUnits(eurMajor: number, currency: string, rates: LimitRates): number {
  const exponent = currencyExponent(currency);
  const rate = rates[currency];
  if (exponent === undefined || rate === undefined) throw new RangeError(`limits: unknown currency ${currency}`);
  return Math.min(Number.MAX_SAFE_INTEGER, Math.round(eurMajor * rate * 10 ** exponent));
}

/** "4100.000 BHD": a limit as a player reads it. */
export function describeLimit(minor: number, currency: string): string {
  return `${formatMinorUnits(minor, currency)} ${currency}`;
}

/** Every money limit of the platform: amounts in EUR-equivalent major units, converted with `rates`. */
export interface MoneyLimits {
  payoutMaxAmount: number;
  payoutDailyMaxAmount: number;
  payoutHourlyMaxCount: number;
  depositMaxAmount: number;
  depositDailyMaxAmount: number;
  accountMaxBalance: number;
  rates: LimitRates;
}

export function moneyLimits(config: {
  PAYOUT_MAX_AMOUNT: number;
  PAYOUT_DAILY_MAX_AMOUNT: number;
  PAYOUT_HOURLY_MAX_COUNT: number;
  DEPOSIT_MAX_AMOUNT: number;
  DEPOSIT_DAILY_MAX_AMOUNT: number;
  ACCOUNT_MAX_BALANCE: number;
  LIMIT_CURRENCY_RATES: LimitRates;
}): MoneyLimits {
  return {
    payoutMaxAmount: config.PAYOUT_MAX_AMOUNT,
    payoutDailyMaxAmount: config.PAYOUT_DAILY_MAX_AMOUNT,
    payoutHourlyMaxCount: config.PAYOUT_HOURLY_MAX_COUNT,
    depositMaxAmount: config.DEPOSIT_MAX_AMOUNT,
    depositDailyMaxAmount: config.DEPOSIT_DAILY_MAX_AMOUNT,
    accountMaxBalance: config.ACCOUNT_MAX_BALANCE,
    rates: config.LIMIT_CURRENCY_RATES,
  };
}

/** The per-deposit cap (`maxMinor`, the account's), checked by the API (nothing written) and again by the saga's first step. */
export function depositAmountRefusal(maxMinor: number, amountMinor: number, currency: string): { code: 'LIMIT_EXCEEDED'; detail: string } | undefined {
  return amountMinor > maxMinor ? { code: 'LIMIT_EXCEEDED', detail: `A deposit may be at most ${describeLimit(maxMinor, currency)}` } : undefined;
}

/**
 * A threshold in major units: `2000` (EUR-equivalent, converted with the limit rates), optionally followed by
 * per-currency amounts in that currency's own major units (`2000,GBP:1700,JPY:300000`); `none`: no threshold.
 */
export interface Threshold {
  eurMajor: number;
  perCurrency: Readonly<Record<string, number>>;
}

export function parseThreshold(text: string): { threshold: Threshold | undefined } | { problems: string[] } {
  if (text.trim() === 'none') return { threshold: undefined };
  const [base = '', ...entries] = text.split(',').map((e) => e.trim());
  const problems: string[] = [];
  if (!/^\d+(\.\d+)?$/.test(base) || !(Number(base) > 0)) problems.push(`"${base}" is not a positive amount (EUR-equivalent major units)`);
  const perCurrency: Record<string, number> = {};
  for (const entry of entries.filter((e) => e !== '')) {
    const match = /^([A-Z]{3}):(\d+(?:\.\d+)?)$/.exec(entry);
    if (!match) problems.push(`"${entry}" is not CUR:amount (e.g. GBP:1700)`);
    else if (currencyExponent(match[1]!) === undefined) problems.push(`${match[1]} is not a known currency`);
    else if (!(Number(match[2]) > 0)) problems.push(`${match[1]}: the amount must be positive`);
    else perCurrency[match[1]!] = Number(match[2]);
  }
  return problems.length > 0 ? { problems } : { threshold: { eurMajor: Number(base), perCurrency: Object.freeze(perCurrency) } };
}

/** A threshold in integer minor units of `currency`: its own amount when given, else the EUR-equivalent converted. */
export function thresholdInMinorUnits(threshold: Threshold, currency: string, rates: LimitRates): number {
  const own = threshold.perCurrency[currency];
  if (own === undefined) return limitInMinorUnits(threshold.eurMajor, currency, rates);
  return Math.min(Number.MAX_SAFE_INTEGER, Math.round(own * 10 ** (currencyExponent(currency) ?? 0)));
}
