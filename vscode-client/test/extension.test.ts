import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { activate, Codeflow, COMMANDS, deactivate, STATUS_NOTIFICATION, STOP_TIMEOUT_MS } from '../src/extension';
import { Readable } from 'node:stream';
import { LanguageClient, State } from './mocks/languageclient';
import * as vscode from './mocks/vscode';

const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'package.json'), 'utf8'));
let root: string;
let context: { subscriptions: { dispose(): unknown }[] };

function lastClient(): LanguageClient {
  return LanguageClient.instances[LanguageClient.instances.length - 1];
}

async function start(): Promise<Codeflow> {
  context = { subscriptions: [] };
  return activate(context as never);
}

function putCursor(file: string, line: number, character: number, languageId = 'python'): void {
  vscode.window.activeTextEditor = {
    document: { uri: vscode.Uri.file(path.join(root, file)), languageId },
    selection: { active: { line, character } },
  };
}

beforeEach(() => {
  vscode.resetMock();
  LanguageClient.instances = [];
  LanguageClient.failStart = undefined;
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-ext-'));
  fs.mkdirSync(path.join(root, '.venv', 'bin'), { recursive: true });
  fs.writeFileSync(path.join(root, '.venv', 'bin', 'codeflow'), '#!/bin/sh\n', { mode: 0o755 });
  vscode.workspace.workspaceFolders = [{ uri: vscode.Uri.file(root), name: 'w', index: 0 }];
});

afterEach(async () => {
  await deactivate();
  context?.subscriptions.forEach((d) => d.dispose());
  fs.rmSync(root, { recursive: true, force: true });
});

describe('activation', () => {
  it('starts the workspace venv server with the settings as initializationOptions', async () => {
    vscode.settingsStore.set('context.budgetTokens', 512);
    vscode.settingsStore.set('logLevel', 'debug');
    await start();
    const client = lastClient();
    expect(client.state).toBe(State.Running);
    expect(client.serverOptions).toMatchObject({
      command: path.join(root, '.venv', 'bin', 'codeflow'),
      args: ['serve', '--log-level', 'debug'],
      options: { cwd: root },
    });
    const init = client.clientOptions.initializationOptions;
    expect(init.codeflow.context.budgetTokens).toBe(512);
    // Only what the user set (bug 8): the defaults are the server's and codeflow.toml's to decide.
    expect(init).toEqual({ codeflow: { context: { budgetTokens: 512 }, logLevel: 'debug' } });
    expect(client.clientOptions.outputChannel.name).toBe('Codeflow');
  });

  it('registers every contributed command, and only those', async () => {
    await start();
    const contributed = pkg.contributes.commands.map((c: { command: string }) => c.command).sort();
    expect([...vscode.registeredCommands.keys()].sort()).toEqual(contributed);
    expect(Object.values(COMMANDS).sort()).toEqual(contributed);
    // The server's own commands are registered by the language client; ours must not clash.
    expect(contributed).not.toContain('codeflow.showContext');
    expect(contributed).not.toContain('codeflow.explainFunction');
  });

  it('renders codeflow/status in the status bar item', async () => {
    const cf = await start();
    expect(cf.item.command).toBe(COMMANDS.menu);
    expect(cf.item.show).toHaveBeenCalled();
    lastClient().notifications.get(STATUS_NOTIFICATION)!({
      backend: 'local', device: 'CPU', model: 'tiny.gguf', state: 'loading', message: 'Loading model',
    });
    expect(cf.item.text).toBe('$(sync~spin) Codeflow: local · CPU');
    lastClient().notifications.get(STATUS_NOTIFICATION)!({
      backend: 'local', device: 'CPU', model: 'tiny.gguf', state: 'error', message: 'model file missing',
    });
    expect(cf.item.text).toContain('$(error)');
    expect((cf.item.backgroundColor as vscode.ThemeColor).id).toBe('statusBarItem.errorBackground');
    expect(cf.item.tooltip).toContain('model file missing');
  });
});

describe('settings changes', () => {
  it('sends didChangeConfiguration with the whole mapped object', async () => {
    await start();
    vscode.changeSettings({ 'remote.url': 'http://gpu-box:8000/v1', backend: 'remote' });
    await new Promise((r) => setTimeout(r, 0));
    const sent = lastClient().sent.filter((m) => m.method === 'workspace/didChangeConfiguration');
    expect(sent).toHaveLength(1);
    const settings = (sent[0].params as { settings: { codeflow: Record<string, any> } }).settings;
    expect(settings.codeflow.backend).toBe('remote');
    expect(settings.codeflow.remote.url).toBe('http://gpu-box:8000/v1');
    expect(settings.codeflow).toEqual({ backend: 'remote', remote: { url: 'http://gpu-box:8000/v1' } });
  });

  it('restarts the server when the launch command changes', async () => {
    await start();
    const first = lastClient();
    const other = path.join(root, 'opt', 'codeflow');
    fs.mkdirSync(path.dirname(other), { recursive: true });
    fs.writeFileSync(other, '#!/bin/sh\n', { mode: 0o755 });
    vscode.changeSettings({ 'server.command': other });
    await new Promise((r) => setTimeout(r, 0));
    expect(first.stop).toHaveBeenCalled();
    expect(LanguageClient.instances).toHaveLength(2);
    expect(lastClient().serverOptions.command).toBe(other);
    expect(first.sent).toHaveLength(0);
    // The server frees its models on shutdown; the default 2 s ends in SIGKILL (bug 4).
    expect(first.stop).toHaveBeenCalledWith(STOP_TIMEOUT_MS);
    expect(STOP_TIMEOUT_MS).toBeGreaterThanOrEqual(10000);
  });

  it('pulls no workspace/configuration: the settings go with initialize and didChangeConfiguration', async () => {
    await start();
    expect(lastClient().clientOptions.middleware.workspace).toBeUndefined();
  });
});

describe('commands', () => {
  it('toggle flips completion.enabled, tells the server and updates the status', async () => {
    const cf = await start();
    await vscode.commands.executeCommand(COMMANDS.toggle);
    expect(vscode.settingsStore.get('completion.enabled')).toBe(false);
    expect(cf.item.text).toContain('circle-slash');
    const sent = lastClient().sent.at(-1)!.params as { settings: { codeflow: { completion: { enabled: boolean } } } };
    expect(sent.settings.codeflow.completion.enabled).toBe(false);
    await vscode.commands.executeCommand(COMMANDS.toggle);
    expect(vscode.settingsStore.get('completion.enabled')).toBe(true);
  });

  it('inline completion requests are skipped when off or for a disabled language', async () => {
    await start();
    const mw = lastClient().clientOptions.middleware;
    const next = () => ['item'];
    const doc = (languageId: string) => ({ languageId });
    expect(await mw.provideInlineCompletionItems(doc('python'), {}, {}, {}, next)).toEqual(['item']);
    vscode.languageStore.set('markdown:completion.enabled', false);
    expect(await mw.provideInlineCompletionItems(doc('markdown'), {}, {}, {}, next)).toBeUndefined();
    vscode.settingsStore.set('completion.disabledLanguages', ['python']);
    expect(await mw.provideInlineCompletionItems(doc('python'), {}, {}, {}, next)).toBeUndefined();
  });

  it('show context sends the cursor to codeflow.showContext and opens the server\'s markdown read-only', async () => {
    await start();
    putCursor('app.py', 4, 7);
    const markdown = '# Codeflow context for app.py:5\n\n## models.py:1-1\nimported (score 1.000)\n\n```python\nclass User: ...\n```\n';
    lastClient().reply = {
      snippets: [{ path: 'models.py', start_line: 1, end_line: 1, text: 'class User: ...', reason: 'imported', score: 1 }],
      dropped: [],
      budget: 1024,
      used: 12,
      markdown,
    };
    await vscode.commands.executeCommand(COMMANDS.context);
    expect(lastClient().requests[0]).toEqual({
      method: 'workspace/executeCommand',
      params: {
        command: 'codeflow.showContext',
        arguments: [{ uri: `file://${root}/app.py`, position: { line: 4, character: 7 } }],
      },
    });
    expect(vscode.shownDocuments).toHaveLength(1);
    expect(vscode.shownDocuments[0].uri.scheme).toBe('codeflow');
    expect(vscode.shownDocuments[0].text).toBe(markdown);
  });

  it('explain streams progress and shows the returned text', async () => {
    await start();
    putCursor('app.py', 2, 0);
    const client = lastClient();
    client.reply = (params: { workDoneToken: string }) => {
      client.progress.get(params.workDoneToken)!({ kind: 'report', message: 'Reads the ' });
      return { text: 'Reads the user table.' };
    };
    await vscode.commands.executeCommand(COMMANDS.explain);
    const req = client.requests[0].params as { command: string; workDoneToken: string };
    expect(req.command).toBe('codeflow.explainFunction');
    expect(client.progress.size).toBe(0);
    expect(vscode.shownDocuments[0].text).toContain('Reads the user table.');
  });

  it('the server explain command (from a code action) is routed to the same view', async () => {
    await start();
    lastClient().reply = { text: 'Explained.' };
    const mw = lastClient().clientOptions.middleware;
    const next = () => 'not routed';
    await mw.executeCommand('codeflow.explainFunction', [{ uri: `file://${root}/a.py`, position: { line: 0, character: 0 } }], next);
    expect(vscode.shownDocuments[0].text).toContain('Explained.');
    expect(mw.executeCommand('other.command', [], next)).toBe('not routed');
  });

  it('commands that need a cursor or a server say so instead of failing', async () => {
    await start();
    await vscode.commands.executeCommand(COMMANDS.context);
    expect(vscode.messages[0].text).toContain('put the cursor');
    putCursor('a.py', 0, 0);
    await lastClient().stop();
    await vscode.commands.executeCommand(COMMANDS.explain);
    expect(vscode.messages[1].text).toContain('not running');
    expect(lastClient().requests).toHaveLength(0);
  });

  it('the status bar quick pick runs the chosen action', async () => {
    const cf = await start();
    vscode.window.showQuickPick.mockImplementationOnce(async (items: any) => {
      expect(items.map((i: { command: string }) => i.command)).toEqual([
        COMMANDS.toggle, COMMANDS.context, COMMANDS.explain, COMMANDS.log, COMMANDS.restart,
      ]);
      return items[3];
    });
    await vscode.commands.executeCommand(COMMANDS.menu);
    expect(cf.output.show).toHaveBeenCalled();
  });

  it('restart stops the old server and starts a new one, resetting the backoff', async () => {
    const cf = await start();
    const first = lastClient();
    cf.status = { backend: 'local', device: 'CPU', model: '', state: 'ready', message: '' };
    await vscode.commands.executeCommand(COMMANDS.restart);
    expect(first.stop).toHaveBeenCalled();
    expect(lastClient()).not.toBe(first);
    expect(lastClient().state).toBe(State.Running);
    expect(cf.status).toBeUndefined();
    expect(lastClient().clientOptions.errorHandler).toBe(cf.backoff);
  });
});

describe('a failed start (bugs 1 and 2)', () => {
  it('a spawn failure shows an error in the status bar, not a spinner, and no second notification', async () => {
    LanguageClient.failStart = new Error('spawn codeflow ENOENT');
    const cf = await start();
    expect(lastClient().state).toBe(State.StartFailed);
    expect(cf.item.text).toBe('$(error) Codeflow');
    expect(cf.item.text).not.toContain('spin');
    expect(cf.item.tooltip).toContain('spawn codeflow ENOENT');
    expect(cf.item.tooltip).toContain('codeflow.server.command');
    expect((cf.item.backgroundColor as vscode.ThemeColor).id).toBe('statusBarItem.errorBackground');
    // The language client has shown its own (forced) notification for this failure.
    expect(vscode.messages).toEqual([]);
  });

  it('a missing command is told once, without starting a client', async () => {
    vscode.settingsStore.set('server.command', path.join(root, 'nowhere', 'codeflow'));
    const cf = await start();
    expect(LanguageClient.instances).toHaveLength(0);
    expect(vscode.messages).toHaveLength(1);
    expect(vscode.messages[0].text).toContain(path.join(root, 'nowhere', 'codeflow'));
    expect(cf.item.text).toBe('$(error) Codeflow');
  });

  it('a restart after fixing the command clears the failure', async () => {
    vscode.settingsStore.set('server.command', path.join(root, 'nowhere', 'codeflow'));
    const cf = await start();
    vscode.changeSettings({ 'server.command': path.join(root, '.venv', 'bin', 'codeflow') });
    await new Promise((r) => setTimeout(r, 0));
    expect(lastClient().state).toBe(State.Running);
    expect(cf.item.text).toBe('$(sync~spin) Codeflow');
  });
});

describe('the output panel (bug 3)', () => {
  it('traces into a channel at Trace level, so codeflow.trace.server alone decides', async () => {
    await start();
    const trace = lastClient().clientOptions.traceOutputChannel;
    expect(trace.logLevel).toBe(vscode.LogLevel.Trace);
    trace.trace('[Trace] Sending request initialize');
    const channel = vscode.window.createOutputChannel.mock.results.find((r) => r.value.name === 'Codeflow Trace')!.value;
    expect(channel.lines).toEqual(['[info] [Trace] Sending request initialize']);
  });

  it('server stderr keeps its Python log level instead of all [error]', async () => {
    const cf = await start();
    const stdio = lastClient().clientOptions.stdioOptions;
    const input = Readable.from([
      '2026-11-30 10:00:00,1 INFO codeflow: indexed 3 files\n',
      '2026-11-30 10:00:00,2 WARNING codeflow: model is slow\n',
      '2026-11-30 10:00:00,3 DEBUG codeflow: prompt 120 tokens\n',
      '2026-11-30 10:00:00,4 ERROR codeflow: worker died\n',
      'Traceback (most recent call last):\n',
    ]);
    stdio.stderr(input, cf.output);
    await new Promise((r) => input.on('end', () => setTimeout(r, 10)));
    const levels = (cf.output as unknown as { lines: string[] }).lines.map((l) => l.slice(0, l.indexOf(']') + 1));
    expect(levels.slice(-5)).toEqual(['[info]', '[warn]', '[debug]', '[error]', '[info]']);
  });
});

describe('inline completion debounce (bug 8)', () => {
  it('an automatic request waits debounceMs and is dropped when the user typed meanwhile', async () => {
    vscode.settingsStore.set('completion.debounceMs', 30);
    await start();
    const mw = lastClient().clientOptions.middleware;
    const next = vi.fn(() => ['item']);
    const token = { isCancellationRequested: false };
    const auto = { triggerKind: vscode.InlineCompletionTriggerKind.Automatic };
    const pending = mw.provideInlineCompletionItems({ languageId: 'python' }, {}, auto, token, next);
    await new Promise((r) => setTimeout(r, 5));
    expect(next).not.toHaveBeenCalled();
    token.isCancellationRequested = true;
    expect(await pending).toBeUndefined();
    expect(next).not.toHaveBeenCalled();
    const fresh = { isCancellationRequested: false };
    expect(await mw.provideInlineCompletionItems({ languageId: 'python' }, {}, auto, fresh, next)).toEqual(['item']);
    // An explicit trigger goes at once.
    next.mockClear();
    const invoked = mw.provideInlineCompletionItems({ languageId: 'python' }, {}, { triggerKind: 0 }, fresh, next);
    expect(next).toHaveBeenCalledTimes(1);
    expect(await invoked).toEqual(['item']);
  });
});
