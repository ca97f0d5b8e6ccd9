import pino, { type Logger } from 'pino';
import { activeTraceIds } from './tracing';

/**
 * Structured JSON logs. Redaction is the last line of defence: code should never put secrets or
 * full account numbers in a log line, but if it does, these paths are censored.
 */
export const REDACTED_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  'authorization',
  '*.iban',
  '*.token',
  '*.wallet_id',
  'destination',
  '*.destination',
  'password',
  '*.password',
  'secret',
  '*.secret',
  // An operator's metadata on a payout or deposit may hold personal data (apps/api/common/operator-metadata.ts).
  'metadata',
  '*.metadata',
];

export function createLogger(service: string, level: string = process.env.LOG_LEVEL ?? 'info', destination?: pino.DestinationStream): Logger {
  return pino(
    {
    level,
    base: { service },
    timestamp: pino.stdTimeFunctions.isoTime,
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    formatters: { level: (label) => ({ level: label }) },
    // Every line logged inside a traced request or activity carries its trace id.
    mixin: activeTraceIds,
    },
    destination,
  );
}

export type { Logger };
