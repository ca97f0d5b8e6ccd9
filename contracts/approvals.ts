/**
 * Manual money actions under four eyes: one staff member requests, a different one approves before it
 * takes effect (FOUR_EYES_ACTIONS says which; the others apply at once, audited as before).
 */
export const APPROVAL_ACTIONS = ['payout_resolve', 'payout_review', 'account_unfreeze', 'chargeback'] as const;
export type ApprovalAction = (typeof APPROVAL_ACTIONS)[number];

/** The same staff member approving their own request (stable code of the refusal). */
export const APPROVER_IS_REQUESTER = 'APPROVER_IS_REQUESTER';
