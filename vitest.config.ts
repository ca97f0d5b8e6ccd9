import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts'],
    // Every API a test starts checks its answers against their documented schemas; a mismatch fails the test.
    setupFiles: ['test/support/response-contract.setup.ts'],
    // Integration tests talk to real PostgreSQL and Temporal: generous, but bounded.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    reporters: ['default', './test/summary-reporter.ts'],
  },
});
