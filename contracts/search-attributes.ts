/**
 * The search attributes staff filter sagas on in the Temporal UI and that the ops listings query: set by the
 * API when it starts a saga, kept current by the saga. Shared by the API, the workflows and the launcher.
 */
import { defineSearchAttributeKey, SearchAttributeType, type SearchAttributePair } from '@temporalio/common';

/**
 * Every saga's status and stuck mark are kept under the keys first registered for payouts (`PayoutStatus`,
 * `PayoutStuck`): staff queries and saved views name them, so the registered names stay.
 */
export const SA = {
  Status: defineSearchAttributeKey('PayoutStatus', SearchAttributeType.KEYWORD),
  AccountId: defineSearchAttributeKey('AccountId', SearchAttributeType.KEYWORD),
  Provider: defineSearchAttributeKey('Provider', SearchAttributeType.KEYWORD),
  Currency: defineSearchAttributeKey('Currency', SearchAttributeType.KEYWORD),
  AmountMinor: defineSearchAttributeKey('AmountMinor', SearchAttributeType.INT),
  Stuck: defineSearchAttributeKey('PayoutStuck', SearchAttributeType.BOOL),
};

/**
 * The search attributes a saga starts with: set by the API when it starts the saga (no history event of
 * their own); a saga started without them adds them itself.
 */
export function startSearchAttributes(input: { accountId: string; provider: string; amount: { minor_units: number; currency: string } }): SearchAttributePair[] {
  return [
    { key: SA.AccountId, value: input.accountId },
    { key: SA.Provider, value: input.provider },
    { key: SA.Currency, value: input.amount.currency },
    { key: SA.AmountMinor, value: input.amount.minor_units },
    { key: SA.Status, value: 'REQUESTED' },
    { key: SA.Stuck, value: false },
  ];
}
