import { afterEach } from 'vitest';
import type { ContractViolation } from '../../apps/api/docs/response-contract';

/**
 * Every API a test starts checks its answers against the documented response schemas (the OpenAPI
 * document the typed client is generated from). Violations are collected here and fail the test that
 * provoked them (test/support/response-contract.setup.ts), whatever that test itself asserts.
 */
const violations: ContractViolation[] = [];

export function recordContractViolation(violation: ContractViolation): void {
  violations.push(violation);
}

/** Takes (and clears) the violations seen since the last call. */
export function takeContractViolations(): ContractViolation[] {
  return violations.splice(0);
}

export function failOnContractViolations(): void {
  afterEach(() => {
    const seen = takeContractViolations();
    if (seen.length) {
      const lines = seen.map((v) => `${v.method} ${v.route} → ${v.status}: ${v.problem}`);
      throw new Error(`Responses that disagree with their documented schema (apps/api ROUTE_DOCS):\n${[...new Set(lines)].join('\n')}`);
    }
  });
}
