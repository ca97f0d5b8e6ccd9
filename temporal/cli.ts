import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/**
 * The Temporal CLI we build when none is given. v1.5.1 bundles Temporal Server 1.29.1 (update-with-start
 * on by default) and Web UI 2.42.1. Bump both constants together.
 */
export const TEMPORAL_CLI_MODULE = 'github.com/temporalio/cli';
export const TEMPORAL_CLI_VERSION = 'v1.5.1';

/** Cache shared by every clone on the machine, so the ~3 minute build happens once per machine. */
export function temporalCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache');
  return path.join(base, 'payout-platform', 'temporal-cli', TEMPORAL_CLI_VERSION);
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

  const dir = temporalCacheDir();
  const cached = path.join(dir, 'temporal');
  if (isExecutable(cached)) return { path: cached, source: 'cache' };

  const go = findOnPath('go') ?? (isExecutable('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined);
  if (!go) {
    throw new Error('No Temporal CLI found (TEMPORAL_CLI, PATH or cache) and no Go toolchain to build one. Install Go or set TEMPORAL_CLI.');
  }
  log(`Building Temporal CLI ${TEMPORAL_CLI_VERSION} from its Go module (first run only, a few minutes)...`);
  const staging = `${dir}.partial-${process.pid}`;
  fs.mkdirSync(staging, { recursive: true });
  const started = Date.now();
  const result = spawnSync(
    go,
    ['install', `-ldflags=-X ${TEMPORAL_CLI_MODULE}/temporalcli.Version=${TEMPORAL_CLI_VERSION.slice(1)}`, `${TEMPORAL_CLI_MODULE}/cmd/temporal@${TEMPORAL_CLI_VERSION}`],
    { env: { ...process.env, GOBIN: staging, CGO_ENABLED: '0' }, stdio: ['ignore', 'inherit', 'inherit'] },
  );
  if (result.status !== 0) {
    fs.rmSync(staging, { recursive: true, force: true });
    throw new Error(`go install of the Temporal CLI failed (exit ${result.status ?? result.signal})`);
  }
  // Rename into place so a concurrent or interrupted build never leaves a half-written binary in the cache.
  fs.mkdirSync(dir, { recursive: true });
  fs.renameSync(path.join(staging, 'temporal'), cached);
  fs.rmSync(staging, { recursive: true, force: true });
  log(`Built Temporal CLI in ${Math.round((Date.now() - started) / 1000)}s: ${cached}`);
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

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

// `npm run temporal:cli` builds or finds the CLI and prints where it is.
if (import.meta.url === `file://${process.argv[1]}`) {
  const cli = ensureTemporalCli();
  process.stdout.write(`${cli.path} (${cli.source}): ${temporalCliVersion(cli.path)}\n`);
}
