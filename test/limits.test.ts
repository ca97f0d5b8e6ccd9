import { describe, expect, it } from 'vitest';
import { CURRENCY_CODES } from '../ledger';
import { ConfigError, loadConfig } from '../lib/config';
import { DEFAULT_LIMIT_RATES, limitInMinorUnits } from '../lib/limits';

describe('per-currency limits (LIMIT_CURRENCY_RATES)', () => {
  it('has a default rate for every currency the ledger knows', () => {
    for (const code of CURRENCY_CODES) expect(DEFAULT_LIMIT_RATES[code], code).toBeGreaterThan(0);
    expect(Object.keys(DEFAULT_LIMIT_RATES).sort()).toEqual([...CURRENCY_CODES]);
  });

  it('converts a EUR-equivalent limit to minor units of each currency', () => {
    const { LIMIT_CURRENCY_RATES: rates } = loadConfig({});
    expect(limitInMinorUnits(10_000, 'EUR', rates)).toBe(1_000_000);
    expect(limitInMinorUnits(10_000, 'JPY', rates)).toBe(1_600_000);
    expect(limitInMinorUnits(10_000, 'BHD', rates)).toBe(4_100_000);
    expect(limitInMinorUnits(10 ** 12, 'IRR', rates)).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('takes overrides over the defaults', () => {
    const { LIMIT_CURRENCY_RATES: rates } = loadConfig({ LIMIT_CURRENCY_RATES: 'JPY:100, BHD:0.5' });
    expect([rates.JPY, rates.BHD, rates.EUR, rates.ISK]).toEqual([100, 0.5, 1, DEFAULT_LIMIT_RATES.ISK]);
  });

  it.each([
    ['XYZ:1', /XYZ is not a known currency/],
    ['JPY:160,BHD:0', /BHD: the rate must be a positive number/],
    ['JPY=160', /"JPY=160" is not CUR:rate/],
    ['EUR:1,usd:1.1', /"usd:1.1" is not CUR:rate/],
  ])('a bad table (%s) is refused, naming the bad currency', (value, message) => {
    expect(() => loadConfig({ LIMIT_CURRENCY_RATES: value })).toThrow(ConfigError);
    expect(() => loadConfig({ LIMIT_CURRENCY_RATES: value })).toThrow(message);
    expect(() => loadConfig({ LIMIT_CURRENCY_RATES: value })).toThrow(/LIMIT_CURRENCY_RATES/);
  });
});
