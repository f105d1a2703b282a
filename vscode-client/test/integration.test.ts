// Starts the real `codeflow serve` with the launch options and settings the extension builds, and
// drives it over JSON-RPC as vscode-languageclient would. Needs the project's venv (skipped without).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  createMessageConnection,
  StreamMessageReader,
  StreamMessageWriter,
  type MessageConnection,
} from 'vscode-jsonrpc/node';
import { Codeflow, STATUS_NOTIFICATION } from '../src/extension';
import { buildServerSettings } from '../src/settings';
import * as vscode from './mocks/vscode';

const repo = path.resolve(__dirname, '..', '..');
const venvBin = path.join(repo, '.venv', 'bin');
const server = process.env.CODEFLOW_COMMAND ?? path.join(venvBin, 'codeflow');
const haveServer = fs.existsSync(server);

interface Status { state: string; backend: string; device: string; model: string; message: string }

let tmp: string;
let workspace: string;
let proc: ChildProcess;
let conn: MessageConnection;
let cf: Codeflow;
let initResult: { capabilities: Record<string, any> };
const statuses: Status[] = [];
const logs: string[] = [];
let stderr = '';

/** A FIM model and a chat model that never stop on their own, so every answer has text. */
function writeTinyModels(fim: string, chat: string): void {
  const code = [
    'import sys',
    `sys.path.insert(0, ${JSON.stringify(path.join(repo, 'tests'))})`,
    'from gguf_factory import CHATML, write_tiny_gguf',
    `write_tiny_gguf(${JSON.stringify(fim)}, fim=True, newline=False, eos=False)`,
    `write_tiny_gguf(${JSON.stringify(chat)}, chat_template=CHATML, newline=False, eos=False)`,
  ].join('\n');
  execFileSync(path.join(venvBin, 'python'), ['-c', code], { stdio: 'inherit' });
}

async function waitFor<T>(what: string, probe: () => T | undefined, ms = 120000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}; statuses ${JSON.stringify(statuses)}; stderr ${stderr.slice(-2000)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The end of the first line that is exactly `text`. */
function cursorAt(file: string, text: string): { line: number; character: number } {
  const line = fs.readFileSync(file, 'utf8').split('\n').indexOf(text);
  expect(line).toBeGreaterThanOrEqual(0);
  return { line, character: text.length };
}

// Model calls share two CPU cores with everything else: allow minutes, not the unit-test 10 s.
describe.skipIf(!haveServer)('the real server, launched as the extension launches it', { timeout: 180000 }, () => {
  beforeAll(async () => {
    vscode.resetMock();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-int-'));
    workspace = path.join(tmp, 'flask_app');
    fs.cpSync(path.join(repo, 'examples', 'flask_app'), workspace, { recursive: true });
    const model = path.join(tmp, 'tiny-fim.gguf');
    const chat = path.join(tmp, 'tiny-chat.gguf');
    writeTinyModels(model, chat);
    vscode.workspace.workspaceFolders = [{ uri: vscode.Uri.file(workspace), name: 'flask_app', index: 0 }];
    for (const [k, v] of Object.entries({
      'server.command': server,
      'model.path': model,
      'model.chatPath': chat,
      'hover.explainMaxTokens': 16,
      'model.nGpuLayers': 0,
      'context.budgetTokens': 512,
      'context.cache': false,
      'completion.maxTokens': 8,
      logLevel: 'debug',
    })) vscode.settingsStore.set(k, v);

    cf = new Codeflow();
    const launch = cf.serverOptions() as { command: string; args: string[]; options: { cwd: string; env: NodeJS.ProcessEnv } };
    expect(launch.command).toBe(server);
    expect(launch.args).toEqual(['serve', '--log-level', 'debug']);
    // What vscode-languageclient does with an Executable without a transport: spawn and pipe stdio.
    proc = spawn(launch.command, launch.args, { ...launch.options, env: { ...launch.options.env, HOME: tmp } });
    proc.stderr!.on('data', (d) => (stderr += String(d)));
    conn = createMessageConnection(new StreamMessageReader(proc.stdout!), new StreamMessageWriter(proc.stdin!));
    conn.onNotification(STATUS_NOTIFICATION, (p: Status) => { statuses.push(p); });
    conn.onNotification('window/logMessage', (p: { message: string }) => { logs.push(p.message); });
    conn.onNotification('window/showMessage', (p: { message: string }) => { logs.push(`show: ${p.message}`); });
    conn.onNotification('$/progress', () => undefined);
    conn.onRequest('window/workDoneProgress/create', () => null);
    conn.onRequest('client/registerCapability', () => null);
    conn.onRequest('window/showMessageRequest', () => null);
    conn.listen();

    const rootUri = pathToFileURL(workspace).toString();
    initResult = await conn.sendRequest('initialize', {
      processId: process.pid,
      rootUri,
      workspaceFolders: [{ uri: rootUri, name: 'flask_app' }],
      capabilities: {
        window: { workDoneProgress: true },
        textDocument: { inlineCompletion: { dynamicRegistration: true }, synchronization: {} },
        workspace: { workspaceFolders: true },
      },
      initializationOptions: cf.clientOptions().initializationOptions,
    });
    await conn.sendNotification('initialized', {});
  });

  afterAll(async () => {
    if (conn) {
      await conn.sendRequest('shutdown').catch(() => undefined);
      await conn.sendNotification('exit').catch(() => undefined);
      conn.dispose();
    }
    if (proc && proc.exitCode === null) {
      await new Promise((r) => {
        const t = setTimeout(() => { proc.kill('SIGKILL'); r(null); }, 10000);
        proc.on('exit', () => { clearTimeout(t); r(null); });
      });
    }
    cf?.dispose();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  it('advertises inline completion and the commands the extension calls', () => {
    const caps = initResult.capabilities;
    expect(caps.inlineCompletionProvider).toBeTruthy();
    expect(caps.executeCommandProvider.commands).toContain('codeflow.showContext');
  });

  it('reports codeflow/status in the shape the status bar renders, and takes the settings', async () => {
    const ready = await waitFor('a ready status', () => statuses.find((s) => ['ready', 'error', 'fallback'].includes(s.state)));
    expect(['local', 'remote', 'none']).toContain(ready.backend);
    expect(ready.state, `server said: ${ready.message}; log: ${logs.join('\n')}`).toBe('ready');
    expect(logs.filter((l) => l.includes('invalid setting'))).toEqual([]);
  });

  it('answers inline completion for the sample workspace', async () => {
    const file = path.join(workspace, 'app.py');
    const uri = pathToFileURL(file).toString();
    await conn.sendNotification('textDocument/didOpen', {
      textDocument: { uri, languageId: 'python', version: 1, text: fs.readFileSync(file, 'utf8') },
    });
    const position = cursorAt(file, '    user = ');
    const result = await conn.sendRequest('textDocument/inlineCompletion', {
      textDocument: { uri },
      position,
      context: { triggerKind: 1 },
    }) as { items: { insertText: unknown; range?: { start: { line: number } } }[] };
    expect(Array.isArray(result.items)).toBe(true);
    const stats = await conn.sendRequest('codeflow/stats', {});
    expect(result.items.length, `no items; server stats ${JSON.stringify(stats)}`).toBeGreaterThan(0);
    for (const item of result.items) {
      expect(typeof item.insertText).toBe('string');
      expect(item.range?.start.line).toBe(position.line);
    }
  });

  it('showContext returns snippets within the budget from initializationOptions, and follows didChangeConfiguration', async () => {
    const file = path.join(workspace, 'app.py');
    const arg = { uri: pathToFileURL(file).toString(), position: cursorAt(file, '    user = ') };
    const first = await conn.sendRequest('workspace/executeCommand', { command: 'codeflow.showContext', arguments: [arg] }) as any;
    expect(first.budget).toBe(512);
    expect(first.used).toBeLessThanOrEqual(512);
    expect(Array.isArray(first.snippets)).toBe(true);
    expect(first.snippets.map((s: { path: string }) => s.path).join(' ')).toMatch(/models\.py/);
    // The view every editor shows, rendered by the server.
    expect(first.markdown).toMatch(/^# Codeflow context for app\.py:\d+\n/);
    expect(first.markdown).toMatch(/\n## models\.py:\d+-\d+\n/);

    vscode.settingsStore.set('context.budgetTokens', 256);
    await conn.sendNotification('workspace/didChangeConfiguration', { settings: buildServerSettings(cf.inspector()) });
    const second = await conn.sendRequest('workspace/executeCommand', { command: 'codeflow.showContext', arguments: [arg] }) as any;
    expect(second.budget).toBe(256);
    expect(second.used).toBeLessThanOrEqual(256);
  });

  it('explainFunction returns {text} for the function under the cursor', async () => {
    const file = path.join(workspace, 'app.py');
    const position = cursorAt(file, 'def register():');
    position.character = 'def re'.length;
    const result = await conn.sendRequest('workspace/executeCommand', {
      command: 'codeflow.explainFunction',
      arguments: [{ uri: pathToFileURL(file).toString(), position }],
      workDoneToken: 'codeflow-explain-test',
    }) as { text: string };
    expect(typeof result.text).toBe('string');
    expect(result.text.trim().length, `log: ${logs.join('\n')}`).toBeGreaterThan(0);
  });
});
