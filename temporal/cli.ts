import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { findOnPath, goCacheDir, goInstall, isExecutable } from './go-build';

/**
 * The Temporal CLI we build when none is given. v1.5.1 bundles Temporal Server 1.29.1 (update-with-start
 * on by default) and Web UI 2.42.1. Bump both constants together.
 */
export const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli';
export const TEMPORAL_CLI_VERSION = 'v1.5.1';

/** Cache shared by every clone on the machine, so the ~3 minute build happens once per machine. */
export function temporalCacheDir(): string {
  return goCacheDir('temporal-cli', TEMPORAL_CLI_VERSION);
}

export interface TemporalCli {
  path: string;
  source: 'TEMPORAL_CLI' | 'PATH' | 'cache' | 'built';
}

/**
 * Finds a `temporal` binary: TEMPORAL_CLI first, then one on PATH, then the cached build; otherwise
 * builds the pinned version from its Go module with `go install` into the cache.
 */
export function ensureTemporalCli(log: (msg: string) => void = (m) => process.stderr.write(`${m}\n`)): TemporalCli {
  const fromEnv = process.env.TEMPORAL_CLI;
  if (fromEnv) {
    if (!isExecutable(fromEnv)) throw new Error(`TEMPORAL_CLI=${fromEnv} is not an executable file`);
    return { path: fromEnv, source: 'TEMPORAL_CLI' };
  }
  const onPath = findOnPath('temporal');
  if (onPath && serverSupportsUpdateWithStart(onPath)) return { path: onPath, source: 'PATH' };
  if (onPath) log(`Ignoring ${onPath}: its server is older than 1.28 (no update-with-start); using the pinned ${TEMPORAL_CLI_VERSION}.`);

  const cached = path.join(temporalCacheDir(), 'temporal');
  if (isExecutable(cached)) return { path: cached, source: 'cache' };
  goInstall({
    what: 'Temporal CLI',
    pkg: `${TEMPORAL_CLI_MODULE}/cmd/temporal`,
    version: TEMPORAL_CLI_VERSION,
    ldflags: `-X ${TEMPORAL_CLI_MODULE}/temporalcli.Version=${TEMPORAL_CLI_VERSION.slice(1)}`,
    target: cached,
    log,
  });
  return { path: cached, source: 'built' };
}

export function temporalCliVersion(cliPath: string): string {
  return execFileSync(cliPath, ['--version'], { encoding: 'utf8' }).trim();
}

/** `temporal --version` prints e.g. "temporal version 1.5.1 (Server 1.29.1, UI 2.42.1)". */
function serverSupportsUpdateWithStart(cliPath: string): boolean {
  try {
    const match = /Server (\d+)\.(\d+)/.exec(temporalCliVersion(cliPath));
    return match !== null && (Number(match[1]) > 1 || Number(match[2]) >= 28);
  } catch {
    return false;
  }
}

// `npm run temporal:cli` builds or finds the CLI and prints where it is.
if (import.meta.url === `file://${process.argv[1]}`) {
  const cli = ensureTemporalCli();
  process.stdout.write(`${cli.path} (${cli.source}): ${temporalCliVersion(cli.path)}\n`);
}
