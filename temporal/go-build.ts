import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** Where the builds of pinned Go programs live, shared by every clone on the machine (built once per machine). */
export function goCacheDir(...parts: string[]): string {
  const base = process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache');
  return path.join(base, 'payout-platform', ...parts);
}

function findGo(): string | undefined {
  return findOnPath('go') ?? (isExecutable('/usr/local/go/bin/go') ? '/usr/local/go/bin/go' : undefined);
}

function requireGo(what: string): string {
  const go = findGo();
  if (!go) throw new Error(`No Go toolchain to build ${what}. Install Go (https://go.dev/dl/) or give a prebuilt binary.`);
  return go;
}

/**
 * `go install <pkg>@<version>` into `target` (a file path). The build goes to a staging folder first and is
 * renamed into place, so a concurrent or interrupted build never leaves a half-written binary in the cache.
 */
export function goInstall(opts: { what: string; pkg: string; version: string; target: string; ldflags?: string; log: (msg: string) => void }): void {
  const go = requireGo(opts.what);
  opts.log(`Building ${opts.what} ${opts.version} from its Go module (first run only, a few minutes)...`);
  const staging = `${opts.target}.partial-${process.pid}`;
  fs.mkdirSync(staging, { recursive: true });
  const started = Date.now();
  const args = ['install', ...(opts.ldflags ? [`-ldflags=${opts.ldflags}`] : []), `${opts.pkg}@${opts.version}`];
  // Outside any Go module (a clone's parent might hold a go.mod), without cgo (static binaries).
  const result = spawnSync(go, args, { cwd: os.tmpdir(), env: { ...process.env, GOBIN: staging, CGO_ENABLED: '0' }, stdio: ['ignore', 'inherit', 'inherit'] });
  try {
    if (result.status !== 0) throw new Error(`go install of ${opts.what} failed (exit ${result.status ?? result.signal})`);
    const [built] = fs.readdirSync(staging);
    if (!built) throw new Error(`go install of ${opts.what} produced no binary`);
    fs.mkdirSync(path.dirname(opts.target), { recursive: true });
    fs.renameSync(path.join(staging, built), opts.target);
  } finally {
    fs.rmSync(staging, { recursive: true, force: true });
  }
  opts.log(`Built ${opts.what} in ${Math.round((Date.now() - started) / 1000)}s: ${opts.target}`);
}

/** The source folder of a module version in Go's module cache (downloaded if missing). */
export function goModuleDir(module: string, version: string): string {
  const go = requireGo(module);
  const out = execFileSync(go, ['mod', 'download', '-json', `${module}@${version}`], { cwd: os.tmpdir(), encoding: 'utf8' });
  const dir = (JSON.parse(out) as { Dir?: string }).Dir;
  if (!dir) throw new Error(`go mod download ${module}@${version} named no folder`);
  return dir;
}

export function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}
