import { z } from 'zod';
import type { Principal } from '../auth/auth';

/** A stable code (INSUFFICIENT_FUNDS, resolved_by_staff, account_closed): the only kind of note a player sees. */
const STABLE_CODE = /^[A-Za-z0-9_.:-]{1,64}$/;

interface Entry<S extends string> {
  at: string;
  status: S;
  note?: string;
  staffNote?: string;
  provider?: string;
  attempt?: number;
}

export function timelineEntrySchema<S extends readonly [string, ...string[]]>(statuses: S) {
  return z.object({
    at: z.string(),
    status: z.enum(statuses),
    note: z.string().optional().describe('a stable code'),
    staff_note: z.string().optional().describe('free text (who acted and why): staff tokens only'),
    provider: z.string().optional().describe('a submission attempt: the provider it went to'),
    attempt: z.number().int().optional().describe('a submission attempt: its number (a payout moves to the next provider of its route only once the one before has no such payout, or failed it)'),
  });
}

/**
 * A saga's timeline as its reader may see it: staff get every note; players and services get stable
 * codes only, so no staff reason, case reference or internal wording ever reaches a player's screen.
 * (Sagas started before notes were split kept free text in `note`: it is staff text too.)
 */
export function timelineFor<S extends string>(entries: Entry<S>[], reader: Principal['role']): { at: string; status: S; note?: string; staff_note?: string; provider?: string; attempt?: number }[] {
  return entries.map(({ at, status, note, staffNote, provider, attempt }) => {
    const code = note !== undefined && STABLE_CODE.test(note) ? note : undefined;
    const staffText = [code === undefined ? note : undefined, staffNote].filter((text): text is string => text !== undefined).join('; ');
    return { at, status, ...(code ? { note: code } : {}), ...(reader === 'staff' && staffText ? { staff_note: staffText } : {}), ...(provider ? { provider } : {}), ...(attempt ? { attempt } : {}) };
  });
}
