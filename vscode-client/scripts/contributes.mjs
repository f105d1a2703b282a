// Rewrites `contributes.configuration.properties` in package.json from src/settings.ts.
// Run `npm run sync-settings` after adding a field to lsp_server/settings.py and the table.
import { build } from 'esbuild';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const dir = mkdtempSync(join(tmpdir(), 'codeflow-settings-'));
const out = join(dir, 'settings.cjs');
await build({ entryPoints: ['src/settings.ts'], outfile: out, format: 'cjs', platform: 'node', logLevel: 'warning' });
const { contributedProperties } = createRequire(import.meta.url)(out);
rmSync(dir, { recursive: true, force: true });
const pkg = JSON.parse(readFileSync('package.json', 'utf8'));
pkg.contributes.configuration.properties = contributedProperties();
writeFileSync('package.json', `${JSON.stringify(pkg, null, 2)}\n`);
console.log(`wrote ${Object.keys(pkg.contributes.configuration.properties).length} settings`);
