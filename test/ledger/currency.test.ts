import { describe, expect, it } from 'vitest';
import { CURRENCY_CODES, currencyExponent, formatMinorUnits, isKnownCurrency, toMinorUnits } from '../../ledger';

describe('ISO 4217 currency table', () => {
  it('knows the exponents the brief names', () => {
    const expected: Record<string, number> = {
      EUR: 2, USD: 2, GBP: 2, JPY: 0, KRW: 0, BHD: 3, KWD: 3, JOD: 3, OMR: 3, TND: 3, IQD: 3, LYD: 3, CLF: 4,
      CHF: 2, SEK: 2, NOK: 2, DKK: 2, PLN: 2, CZK: 2, HUF: 2, BRL: 2, MXN: 2, CAD: 2, AUD: 2, NZD: 2, INR: 2,
      CNY: 2, HKD: 2, SGD: 2, ZAR: 2, TRY: 2, ISK: 0, VND: 0, CLP: 0, UGX: 0, XAF: 0, XOF: 0, PYG: 0, RWF: 0,
      KMF: 0, GNF: 0, DJF: 0, VUV: 0, XPF: 0, BIF: 0,
    };
    for (const [code, exponent] of Object.entries(expected)) expect([code, currencyExponent(code)]).toEqual([code, exponent]);
  });

  it('refuses codes that are not currencies with a minor unit', () => {
    for (const code of ['XXX', 'XAU', 'XDR', 'HRK', 'eur', 'EURO', '', 'toString', '__proto__']) {
      expect(isKnownCurrency(code)).toBe(false);
      expect(currencyExponent(code)).toBeUndefined();
    }
    expect(CURRENCY_CODES.length).toBeGreaterThan(150);
    expect(CURRENCY_CODES.every((c) => /^[A-Z]{3}$/.test(c))).toBe(true);
  });

  it('converts major units within the exponent only', () => {
    expect(toMinorUnits('12.34', 'EUR')).toBe(1234);
    expect(toMinorUnits('12.3', 'EUR')).toBe(1230);
    expect(toMinorUnits('12', 'EUR')).toBe(1200);
    expect(toMinorUnits('12.345', 'EUR')).toBeUndefined();
    expect(toMinorUnits('1.5', 'JPY')).toBeUndefined();
    expect(toMinorUnits('100', 'JPY')).toBe(100);
    expect(toMinorUnits('1.234', 'BHD')).toBe(1234);
    expect(toMinorUnits('-1', 'EUR')).toBeUndefined();
    expect(toMinorUnits('1e3', 'EUR')).toBeUndefined();
    expect(toMinorUnits('90071992547409.91', 'EUR')).toBe(Number.MAX_SAFE_INTEGER);
    expect(toMinorUnits('90071992547409.92', 'EUR')).toBeUndefined();
    expect(toMinorUnits('1', 'XXX')).toBeUndefined();
  });

  it('formats minor units', () => {
    expect(formatMinorUnits(1234, 'EUR')).toBe('12.34');
    expect(formatMinorUnits(5, 'EUR')).toBe('0.05');
    expect(formatMinorUnits(-5, 'BHD')).toBe('-0.005');
    expect(formatMinorUnits(500, 'JPY')).toBe('500');
    expect(formatMinorUnits(1, 'CLF')).toBe('0.0001');
  });
});
