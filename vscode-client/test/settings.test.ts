import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  buildServerSettings,
  completionsWanted,
  contributedProperties,
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
const python = path.resolve(__dirname, '..', '..', '.venv', 'bin', 'python');

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

  it('never sends the client-only settings', () => {
    const s = buildServerSettings((k) => ({ globalValue: k.startsWith('server.') ? 'x' : undefined }));
    expect(s.codeflow).not.toHaveProperty('server');
  });

  it('turns completions off globally or per language', () => {
    expect(completionsWanted(() => undefined, 'python')).toBe(true);
    expect(completionsWanted((k) => (k === 'completion.enabled' ? false : undefined), 'python')).toBe(false);
    const off = (k: string) => (k === 'completion.disabledLanguages' ? ['markdown'] : undefined);
    expect(completionsWanted(off, 'markdown')).toBe(false);
    expect(completionsWanted(off, 'python')).toBe(true);
  });

  it('package.json contributes exactly the table', () => {
    expect(pkg.contributes.configuration.properties).toEqual(contributedProperties());
  });

  it.skipIf(!fs.existsSync(python))('matches the Python Settings struct leaf for leaf', () => {
    const code = [
      'import json, msgspec',
      'from codeflow.lsp_server.settings import Settings',
      'print(msgspec.json.encode(Settings()).decode())',
    ].join('\n');
    const server = leaves(JSON.parse(execFileSync(python, ['-c', code], { encoding: 'utf8' })));
    const ours = leaves(defaultServerSettings().codeflow);
    expect(Object.keys(ours).sort()).toEqual(Object.keys(server).sort());
    expect(ours).toEqual(server);
  });
});
