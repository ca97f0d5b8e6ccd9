import { isValidIBAN } from 'ibantools';

/**
 * A payable IBAN: a country in ibantools' registry, that country's exact length and BBAN format (and its
 * national check digits where ibantools knows them), and the ISO 13616 mod-97 checksum. mod-97 alone let a
 * German IBAN one digit short, country `XX` or a GB IBAN without its bank code through.
 */
export function isValidIban(input: string): boolean {
  return isValidIBAN(normalizeIban(input));
}

/**
 * Electronic format (what is stored and sent to the provider): the print format's grouping spaces are
 * dropped and letters upper-cased, because players paste IBANs as their bank prints them. Nothing else is
 * forgiven: a dash, tab or other character makes the IBAN invalid.
 */
export function normalizeIban(input: string): string {
  return input.replace(/ /g, '').toUpperCase();
}
