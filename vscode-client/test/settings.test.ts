import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  buildServerSettings,
  CLIENT_SETTINGS,
  completionsWanted,
  contributedSettings,
  defaultServerSettings,
  SERVER_SETTINGS,
  type ConfigValues,
} from '../src/settings';

/** An inspector where `user` holds the global (user) values and every key has its default. */
function inspector(user: Record<string, unknown>, workspace: Record<string, unknown> = {}) {
  return (key: string): ConfigValues => ({
    defaultValue: SERVER_SETTINGS.find((s) => s.key === key)?.default,
    globalValue: user[key],
    workspaceValue: workspace[key],
  });
}

const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'));

function leaves(tree: Record<string, unknown>, prefix = ''): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(tree)) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) Object.assign(out, leaves(v as Record<string, unknown>, key));
    else out[key] = v;
  }
  return out;
}

describe('settings mapping', () => {
  it('sends nothing the user did not set, so codeflow.toml and the server defaults hold (bug 8)', () => {
    expect(buildServerSettings(inspector({}))).toEqual({ codeflow: {} });
    const s = buildServerSettings(inspector({ 'model.nCtx': 2048 }, { 'context.budgetTokens': 512 }));
    expect(s).toEqual({ codeflow: { model: { nCtx: 2048 }, context: { budgetTokens: 512 } } });
    // A value the user set equal to the default is still the user's choice, and is sent.
    expect(buildServerSettings(inspector({ backend: 'auto' }))).toEqual({ codeflow: { backend: 'auto' } });
  });

  it('a workspace value wins over the user value', () => {
    const s = buildServerSettings(inspector({ backend: 'local' }, { backend: 'remote' }));
    expect(s.codeflow.backend).toBe('remote');
  });

  it('lists every default nested under "codeflow"', () => {
    const s = defaultServerSettings();
    expect(s.codeflow.backend).toBe('auto');
    expect(s.codeflow.model).toMatchObject({ path: '', chatPath: 'default', nCtx: 4096, nGpuLayers: -1 });
    expect(s.codeflow.completion).toMatchObject({ enabled: true, debounceMs: 75, disabledLanguages: [] });
    expect(s.codeflow.remote).toMatchObject({ url: '', apiKeyEnv: '' });
    expect(Object.keys(leaves(s.codeflow))).toHaveLength(SERVER_SETTINGS.length);
  });

  it('maps dotted VS Code keys to nested camelCase objects', () => {
    const user: Record<string, unknown> = {
      backend: 'remote',
      'remote.url': 'http://localhost:8000/v1',
      'remote.apiKeyEnv': 'MY_KEY',
      'model.chatPath': '/m/chat.gguf',
      'context.budgetTokens': 2048,
      'completion.debounceMs': 10,
      'completion.disabledLanguages': ['markdown'],
    };
    const s = buildServerSettings(inspector(user));
    expect(s.codeflow.backend).toBe('remote');
    expect(s.codeflow.remote).toEqual({ url: 'http://localhost:8000/v1', apiKeyEnv: 'MY_KEY' });
    expect((s.codeflow.model as Record<string, unknown>).chatPath).toBe('/m/chat.gguf');
    expect((s.codeflow.context as Record<string, unknown>).budgetTokens).toBe(2048);
    expect(s.codeflow.completion).toMatchObject({ debounceMs: 10, disabledLanguages: ['markdown'] });
  });

  it('turns completions off globally or per language', () => {
    expect(completionsWanted(() => undefined, 'python')).toBe(true);
    expect(completionsWanted((k) => (k === 'completion.enabled' ? false : undefined), 'python')).toBe(false);
    const off = (k: string) => (k === 'completion.disabledLanguages' ? ['markdown'] : undefined);
    expect(completionsWanted(off, 'markdown')).toBe(false);
    expect(completionsWanted(off, 'python')).toBe(true);
  });

  it('sends the server settings the user set, and none of the client-only ones', () => {
    const set: Record<string, unknown> = { 'server.command': '/x/codeflow', 'trace.server': 'verbose', 'hover.waitMs': 5 };
    expect(buildServerSettings(inspector(set))).toEqual({ codeflow: { hover: { waitMs: 5 } } });
  });
});

// package.json's configuration is generated from the Python `Settings` (scripts/gen_configuration.py);
// tests/test_settings_schema.py checks that the committed file matches the generator.
describe('settings read from the generated package.json', () => {
  const properties = pkg.contributes.configuration.properties as Record<string, Record<string, unknown>>;

  it('splits every contributed setting into server and client ones', () => {
    const all = [...SERVER_SETTINGS, ...CLIENT_SETTINGS].map((s) => `codeflow.${s.key}`).sort();
    expect(all).toEqual(Object.keys(properties).sort());
    expect(CLIENT_SETTINGS.map((s) => s.key).sort()).toEqual(['server.args', 'server.command', 'trace.server']);
    expect(SERVER_SETTINGS.some((s) => s.key.startsWith('server.') || s.key.startsWith('trace.'))).toBe(false);
  });

  it('carries the bounds and descriptions of the Python schema', () => {
    const nCtx = SERVER_SETTINGS.find((s) => s.key === 'model.nCtx');
    expect(nCtx).toMatchObject({ type: 'integer', default: 4096, minimum: 256 });
    expect(nCtx?.description).toMatch(/context window/i);
    expect(SERVER_SETTINGS.find((s) => s.key === 'model.kvType')?.enum).toEqual(['f16', 'q8_0', 'q4_0']);
    for (const spec of SERVER_SETTINGS) {
      expect(spec.description, spec.key).not.toBe('');
      expect(spec.default, spec.key).not.toBeUndefined();
    }
  });

  it('keeps the per-language scope the client reads per document', () => {
    expect(properties['codeflow.completion.enabled'].scope).toBe('language-overridable');
    expect(properties['codeflow.completion.disabledLanguages'].scope).toBe('language-overridable');
  });

  it('derives a setting added to the schema with no TypeScript change', () => {
    const specs = contributedSettings({
      'codeflow.hover.newThing': { type: 'integer', default: 3, markdownDescription: 'New.', minimum: 1, maximum: 9 },
      'editor.fontSize': { type: 'integer', default: 12, markdownDescription: 'Not ours.' },
    });
    expect(specs).toEqual([
      { key: 'hover.newThing', type: 'integer', default: 3, description: 'New.', minimum: 1, maximum: 9 },
    ]);
  });
});
