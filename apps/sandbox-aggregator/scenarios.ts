import type { Destination } from './objects';
import { describeIssues, scenarioSchema, type Scenario, type ScenarioName } from './schemas';

/**
 * How a submission picks its scripted outcome: a scenario registered for its reference through the control
 * endpoint wins; otherwise a magic value (like Stripe's test tokens); otherwise `settle`.
 */
export const MAGIC_PREFIX = 'sandbox:';
export const DEFAULT_SCENARIO: Scenario = { scenario: 'settle' };

/** Scenarios that need a settled-then-returned lifecycle, which deposits do not have, and accept_then_error (payouts only). */
const PAYOUT_ONLY: ReadonlySet<ScenarioName> = new Set(['out_of_order', 'return_after_settlement', 'accept_then_error']);

export function supportsDeposits(scenario: Scenario): boolean {
  return !PAYOUT_ONLY.has(scenario.scenario);
}

/** `reverse_after_ms`: the chargeback of a deposit after it succeeded; undefined when the scenario names none. */
export function reverseAfterMsOf(scenario: Scenario): number | undefined {
  return 'reverse_after_ms' in scenario ? scenario.reverse_after_ms : undefined;
}

/** A payout cannot be reversed (charged back): a scenario naming `reverse_after_ms` is for deposits only. */
export function supportsPayouts(scenario: Scenario): boolean {
  return reverseAfterMsOf(scenario) === undefined;
}

/** What the `<param>` of `sandbox:<scenario>:<param>` sets, per scenario. */
const MAGIC_PARAM: Record<ScenarioName, ((param: string) => Record<string, unknown>) | undefined> = {
  settle: (param) => ({ callback_delay_ms: Number(param) }),
  fail: (param) => ({ failure_code: param }),
  never_callback: (param) => ({ outcome: param }),
  stay_pending: undefined,
  duplicate_callback: (param) => (param === 'distinct' ? { also_distinct_id: true } : { outcome: param }),
  out_of_order: (param) => ({ return_reason: param }),
  return_after_settlement: (param) => ({ return_reason: param }),
  slow: (param) => ({ delay_ms: Number(param) }),
  error_then_ok: (param) => ({ fail_attempts: Number(param) }),
  reject: undefined,
  accept_then_error: (param) => ({ status: Number(param) }),
};

/** accept_then_error: the status its submissions answer, and how many do (undefined: every one). */
export const DEFAULT_ACCEPT_THEN_ERROR_STATUS = 500;
export function acceptedErrorOf(scenario: Scenario): { status: number; errorAttempts: number | undefined } | undefined {
  if (scenario.scenario !== 'accept_then_error') return undefined;
  return { status: scenario.status ?? DEFAULT_ACCEPT_THEN_ERROR_STATUS, errorAttempts: scenario.error_attempts };
}

export type ScenarioParse = { ok: true; scenario: Scenario | undefined } | { ok: false; message: string };

/** Parses `<scenario>` or `<scenario>:<param>`, with or without the `sandbox:` prefix. */
export function parseMagicScenario(value: string): ScenarioParse {
  const body = value.startsWith(MAGIC_PREFIX) ? value.slice(MAGIC_PREFIX.length) : value;
  const colon = body.indexOf(':');
  const name = colon === -1 ? body : body.slice(0, colon);
  const param = colon === -1 ? undefined : body.slice(colon + 1);
  if (!Object.hasOwn(MAGIC_PARAM, name)) return { ok: false, message: `unknown sandbox scenario "${name}"` };
  const toParams = MAGIC_PARAM[name as ScenarioName];
  if (param !== undefined && !toParams) return { ok: false, message: `sandbox scenario "${name}" takes no parameter` };
  const parsed = scenarioSchema.safeParse({ scenario: name, ...(param !== undefined && toParams ? toParams(param) : {}) });
  return parsed.success ? { ok: true, scenario: parsed.data } : { ok: false, message: `sandbox scenario "${value}": ${describeIssues(parsed.error)}` };
}

/** A wallet id or card token `sandbox:<scenario>[:<param>]` selects a scenario; anything else (any IBAN) does not. */
export function scenarioFromDestination(destination: Destination): ScenarioParse {
  const value = destination.method === 'ewallet' ? destination.wallet_id : destination.method === 'card' ? destination.token : undefined;
  if (value === undefined || !value.startsWith(MAGIC_PREFIX)) return { ok: true, scenario: undefined };
  return parseMagicScenario(value);
}

/** `metadata.sandbox_scenario`: the magic string or a scenario object (deposits have no destination to carry one). */
export function scenarioFromMetadata(metadata: Record<string, unknown> | undefined): ScenarioParse {
  const value = metadata?.sandbox_scenario;
  if (value === undefined) return { ok: true, scenario: undefined };
  if (typeof value === 'string') return parseMagicScenario(value);
  const parsed = scenarioSchema.safeParse(value);
  return parsed.success ? { ok: true, scenario: parsed.data } : { ok: false, message: `metadata.sandbox_scenario: ${describeIssues(parsed.error)}` };
}

/** The final outcome a scenario eventually produces, and whether it is announced by webhook. */
export function finalOutcomeOf(scenario: Scenario): 'settle' | 'fail' {
  switch (scenario.scenario) {
    case 'fail':
      return 'fail';
    case 'never_callback':
    case 'duplicate_callback':
      return scenario.outcome ?? 'settle';
    default:
      return 'settle';
  }
}

export function failureCodeOf(scenario: Scenario, kind: 'payout' | 'deposit'): string {
  const explicit = 'failure_code' in scenario ? scenario.failure_code : undefined;
  return explicit ?? (kind === 'payout' ? 'account_closed' : 'payment_declined');
}

export function returnReasonOf(scenario: Scenario): string {
  return ('return_reason' in scenario ? scenario.return_reason : undefined) ?? 'account_closed';
}
