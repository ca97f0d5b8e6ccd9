// Prints the README's configuration table from lib/config.ts (the test in test/config.test.ts keeps them in step).
import { settings } from '../lib/config';

process.stdout.write('| Variable | Default | What it does |\n|---|---|---|\n');
for (const [name, s] of Object.entries(settings)) {
  process.stdout.write(`| \`${name}\` | ${s.default === undefined ? '(unset)' : s.default === '' ? '(empty)' : `\`${s.default}\``} | ${s.description} |\n`);
}
