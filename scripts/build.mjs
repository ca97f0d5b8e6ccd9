// `npm run build [-- --out-dir <dir>]`: the production JavaScript (default dist/), run by plain `node`
// (`node dist/apps/api/main.js`, no tsx). tsc compiles with tsconfig.build.json; the sources' extensionless
// relative imports (moduleResolution "bundler") are then rewritten by tsc-alias --resolve-full-paths to the
// `.js` files Node's ESM loader needs. The output must stay inside this folder: Node finds node_modules and
// package.json ("type": "module") by walking up from it, and lib/config.ts finds migrations/ that way.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { replaceTscAliasPaths } from 'tsc-alias';

const root = path.resolve(import.meta.dirname, '..');
const { values } = parseArgs({ options: { 'out-dir': { type: 'string', default: 'dist' } } });
const outDir = path.resolve(root, values['out-dir']);
if (!outDir.startsWith(root + path.sep)) {
  console.error(`--out-dir must be inside ${root} (node_modules and migrations/ are found from there)`);
  process.exit(2);
}
const configFile = path.join(root, 'tsconfig.build.json');

fs.rmSync(outDir, { recursive: true, force: true });
const tsc = spawnSync(process.execPath, [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', configFile, '--outDir', outDir], { cwd: root, stdio: 'inherit' });
if (tsc.status !== 0) process.exit(tsc.status ?? 1);
await replaceTscAliasPaths({ configFile, outDir, resolveFullPaths: true });

// Every relative import must now name a file that exists: what plain `node` would fail on at start.
const unresolved = [];
for (const file of fs.readdirSync(outDir, { recursive: true, encoding: 'utf8' })) {
  if (!file.endsWith('.js')) continue;
  const text = fs.readFileSync(path.join(outDir, file), 'utf8');
  const specifiers = text.matchAll(/(?:^|[\s;])(?:import|export)\s[^'"]*?from\s*['"](\.{1,2}\/[^'"]+)['"]|(?:^|[\s;])import\s*['"](\.{1,2}\/[^'"]+)['"]|import\(\s*['"](\.{1,2}\/[^'"]+)['"]\s*\)/gm);
  for (const match of specifiers) {
    const specifier = match[1] ?? match[2] ?? match[3];
    if (!fs.statSync(path.resolve(outDir, path.dirname(file), specifier), { throwIfNoEntry: false })?.isFile()) unresolved.push(`${file}: ${specifier}`);
  }
}
if (unresolved.length > 0) {
  console.error(`unresolved relative imports in the build:\n  ${unresolved.join('\n  ')}`);
  process.exit(1);
}
console.log(`built ${path.relative(root, outDir)}/ (node ${path.relative(root, outDir)}/apps/api/main.js, .../worker/main.js, .../outbox-publisher/main.js, .../sandbox-aggregator/main.js, ${path.relative(root, outDir)}/scripts/migrate.js)`);
