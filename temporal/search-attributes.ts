/**
 * The platform's custom search attributes. Workflows upsert them; finance staff filter on them
 * in the Temporal Web UI (e.g. `PayoutStatus = "SUBMITTED" AND PayoutStuck = true`).
 * Kept free of imports so workflow code can use the names too.
 */
export const CUSTOM_SEARCH_ATTRIBUTES = {
  PayoutStatus: 'Keyword',
  AccountId: 'Keyword',
  Provider: 'Keyword',
  Currency: 'Keyword',
  AmountMinor: 'Int',
  PayoutStuck: 'Bool',
} as const;

export type CustomSearchAttributeName = keyof typeof CUSTOM_SEARCH_ATTRIBUTES;
