// "Codeflow: Choose Model…": presets that fit from `codeflow model list --json`, then
// `codeflow model pull --json` (progress lines) and `codeflow model use` (issue 15).
// No `vscode` import here: the UI comes in as functions, so the flow is tested without VS Code.
import { spawn } from 'node:child_process';

export interface QuantFit {
  quant: string;
  file: string;
  size_bytes: number;
  fits: string;
  pulled: boolean;
  path: string;
}

export interface PresetRow {
  name: string;
  display: string;
  role: string;
  repo: string;
  params_b: number;
  remote: string;
  recommended_quant: string | null;
  fits: boolean;
  quants: QuantFit[];
}

export interface ModelPick {
  label: string;
  description: string;
  detail: string;
  preset: string;
  quant: string;
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Presets that fit this machine, as quick-pick items: the planner's quant, its size, downloaded or not. */
export function modelPicks(rows: readonly PresetRow[]): ModelPick[] {
  return rows
    .filter((r) => r.fits && !r.remote && r.recommended_quant)
    .map((r) => {
      const quant = r.recommended_quant as string;
      const q = r.quants.find((x) => x.quant === quant);
      const size = q ? `${(q.size_bytes / 2 ** 30).toFixed(1)} GiB` : '';
      return {
        label: r.name,
        description: [quant, size, q?.pulled ? 'downloaded' : ''].filter(Boolean).join(' · '),
        detail: `${r.role} · ${r.params_b}B parameters · ${r.repo}`,
        preset: r.name,
        quant,
      };
    });
}

/** One `pull --json` progress line as a fraction 0..1, or undefined for any other line. */
export function progressOf(line: string): { done: number; total: number } | undefined {
  try {
    const event = JSON.parse(line) as { event?: string; done?: number; total?: number };
    if (event.event === 'progress' && typeof event.done === 'number' && typeof event.total === 'number') {
      return { done: event.done, total: event.total };
    }
  } catch {
    // Not JSON: huggingface_hub's own messages go to stderr, but be lenient.
  }
  return undefined;
}

/** Run the CLI, calling `onLine` for each stdout line as it arrives. */
export function runCli(
  command: string,
  args: readonly string[],
  onLine: (line: string) => void = () => undefined,
  cwd?: string,
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(command, [...args], { cwd });
    let stdout = '';
    let stderr = '';
    let pending = '';
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      pending += chunk.toString();
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      lines.forEach(onLine);
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', (err) => resolve({ code: -1, stdout, stderr: stderr + String(err) }));
    child.on('close', (code) => {
      if (pending) onLine(pending);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}

export interface ChooseUi {
  pick(items: ModelPick[]): Promise<ModelPick | undefined>;
  /** Runs `task` under a progress notification; `report` takes a fraction of the download. */
  progress<T>(title: string, task: (report: (fraction: number) => void) => Promise<T>): Promise<T>;
}

/** The whole flow; resolves to a message for the user, or undefined when they cancelled. */
export async function chooseModel(command: string, ui: ChooseUi, cwd?: string): Promise<string | undefined> {
  const listed = await runCli(command, ['model', 'list', '--json'], undefined, cwd);
  if (listed.code !== 0) {
    throw new Error(`codeflow model list failed: ${lastLine(listed.stderr)}`);
  }
  const picks = modelPicks(JSON.parse(listed.stdout) as PresetRow[]);
  if (picks.length === 0) {
    throw new Error('no preset fits this machine; see `codeflow plan --recommend` for the remote option');
  }
  const chosen = await ui.pick(picks);
  if (!chosen) return undefined;
  const pulled = await ui.progress(`Codeflow: downloading ${chosen.preset} ${chosen.quant}`, (report) =>
    runCli(command, ['model', 'pull', chosen.preset, '--quant', chosen.quant, '--json'], (line) => {
      const p = progressOf(line);
      if (p && p.total > 0) report(p.done / p.total);
    }, cwd),
  );
  if (pulled.code !== 0) {
    throw new Error(`download failed: ${lastLine(pulled.stderr)}`);
  }
  const used = await runCli(command, ['model', 'use', chosen.preset, '--quant', chosen.quant], undefined, cwd);
  if (used.code !== 0) {
    throw new Error(`codeflow model use failed: ${lastLine(used.stderr)}`);
  }
  return lastLine(used.stdout);
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n');
  return lines[lines.length - 1] ?? '';
}
