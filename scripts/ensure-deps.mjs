// Installs the Node dependencies when they are missing or older than package-lock.json.
// Plain Node with no imports beyond built-ins, because it runs before anything is installed.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const root = path.resolve(import.meta.dirname, '..');
const lock = path.join(root, 'package-lock.json');
const installedMarker = path.join(root, 'node_modules', '.package-lock.json');

const [major, minor] = process.versions.node.split('.').map(Number);
if (major < 20 || (major === 20 && minor < 19)) {
  console.error(`Node.js >= 20.19 is required (found ${process.versions.node}).`);
  process.exit(1);
}

const stale = !fs.existsSync(installedMarker) || fs.statSync(installedMarker).mtimeMs < fs.statSync(lock).mtimeMs;
if (stale) {
  console.error('Installing Node dependencies...');
  // `npm install`, not `npm ci`: ci refuses a lock file that lacks other platforms' optional packages
  // (e.g. @swc/core-darwin-*), which registries without them leave out. With a lock in step with
  // package.json, install resolves exactly the locked versions and leaves the lock untouched.
  const result = spawnSync('npm', ['install', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
