import fs from 'node:fs';
import path from 'node:path';
import { repoRoot } from '../../lib/config';

const buildConfig = JSON.parse(
  // tsconfig allows comments: the build config's are whole lines starting with //.
  fs.readFileSync(path.join(repoRoot, 'tsconfig.build.json'), 'utf8').replace(/^\s*\/\/.*$/gm, ''),
) as { compilerOptions: { outDir: string }; include: string[]; exclude?: string[] };

/** dist/, where `npm run build` writes (tsconfig.build.json's outDir). */
export const BUILD_OUT_DIR = buildConfig.compilerOptions.outDir;

/**
 * The source file `npm run build` compiles into `entry` (e.g. `dist/apps/api/main.js` ← `apps/api/main.ts`), or
 * undefined when the build produces no such file: outside dist/, not .js, no source, or a folder the build does not include.
 */
export function sourceOfBuiltEntry(entry: string): string | undefined {
  const normalized = path.posix.normalize(entry);
  const prefix = `${BUILD_OUT_DIR}/`;
  if (!normalized.startsWith(prefix) || !normalized.endsWith('.js')) return undefined;
  const source = `${normalized.slice(prefix.length, -'.js'.length)}.ts`;
  if (!buildConfig.include.some((folder) => source.startsWith(`${folder}/`))) return undefined;
  if (buildConfig.exclude?.includes(source)) return undefined;
  return fs.existsSync(path.join(repoRoot, source)) ? source : undefined;
}
