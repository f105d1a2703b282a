import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chooseModel, modelPicks, progressOf, type ModelPick, type PresetRow } from '../src/models';

let root: string;
beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-models-'));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

const ROWS: PresetRow[] = [
  {
    name: 'qwen2.5-coder-1.5b', display: 'Qwen2.5-Coder-1.5B', role: 'completion', repo: 'org/q', params_b: 1.54,
    remote: '', recommended_quant: 'Q8_0', fits: true,
    quants: [{ quant: 'Q8_0', file: 'q.gguf', size_bytes: 2 ** 30, fits: 'cpu', pulled: false, path: '' }],
  },
  {
    name: 'big', display: 'Big', role: 'chat', repo: 'org/b', params_b: 32, remote: '', recommended_quant: null,
    fits: false, quants: [],
  },
  {
    name: 'iquest', display: 'IQuest', role: 'both', repo: 'org/i', params_b: 40, remote: 'loops', recommended_quant: null,
    fits: false, quants: [],
  },
];

/** A fake `codeflow` that answers list, pull (with progress lines) and use, and logs its calls. */
function fakeCli(pullExit = 0): string {
  const file = path.join(root, 'codeflow');
  const log = path.join(root, 'calls.log');
  fs.writeFileSync(
    file,
    `#!/bin/sh
echo "$@" >> '${log}'
case "$2" in
  list) cat <<'JSON'
${JSON.stringify(ROWS)}
JSON
  ;;
  pull) echo '{"event":"progress","done":50,"total":100}'; echo '{"event":"progress","done":100,"total":100}'
        [ ${pullExit} -ne 0 ] && { echo "codeflow model: cannot reach the model hub" >&2; exit ${pullExit}; }
        echo '{"event":"done","path":"/x.gguf"}' ;;
  use) echo "model.path = /x.gguf (qwen2.5-coder-1.5b Q8_0) in /cfg/codeflow.toml" ;;
esac
`,
    { mode: 0o755 },
  );
  return file;
}

describe('choosing a model', () => {
  it('offers only local presets that fit, with quant and size', () => {
    const picks = modelPicks(ROWS);
    expect(picks.map((p) => p.preset)).toEqual(['qwen2.5-coder-1.5b']);
    expect(picks[0].description).toBe('Q8_0 · 1.0 GiB');
  });

  it('reads progress lines and ignores others', () => {
    expect(progressOf('{"event":"progress","done":5,"total":10}')).toEqual({ done: 5, total: 10 });
    expect(progressOf('{"event":"done"}')).toBeUndefined();
    expect(progressOf('not json')).toBeUndefined();
  });

  it('pulls with progress, then uses the chosen preset', async () => {
    const cli = fakeCli();
    const fractions: number[] = [];
    let offered: ModelPick[] = [];
    const message = await chooseModel(cli, {
      pick: async (items) => {
        offered = items;
        return items[0];
      },
      progress: (_title, task) => task((f) => fractions.push(f)),
    });
    expect(offered).toHaveLength(1);
    expect(fractions).toEqual([0.5, 1]);
    expect(message).toContain('model.path = /x.gguf');
    const calls = fs.readFileSync(path.join(root, 'calls.log'), 'utf8').trim().split('\n');
    expect(calls).toEqual([
      'model list --json',
      'model pull qwen2.5-coder-1.5b --quant Q8_0 --json',
      'model use qwen2.5-coder-1.5b --quant Q8_0',
    ]);
  });

  it('stops with the CLI error when the download fails, and never runs use', async () => {
    const cli = fakeCli(1);
    await expect(
      chooseModel(cli, { pick: async (items) => items[0], progress: (_t, task) => task(() => undefined) }),
    ).rejects.toThrow('cannot reach the model hub');
    expect(fs.readFileSync(path.join(root, 'calls.log'), 'utf8')).not.toContain('model use');
  });

  it('does nothing more when the user cancels the pick', async () => {
    const cli = fakeCli();
    const out = await chooseModel(cli, { pick: async () => undefined, progress: (_t, task) => task(() => undefined) });
    expect(out).toBeUndefined();
    expect(fs.readFileSync(path.join(root, 'calls.log'), 'utf8').trim()).toBe('model list --json');
  });
});
