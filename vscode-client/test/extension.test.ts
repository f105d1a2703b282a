import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { activate, Codeflow, COMMANDS, deactivate, STATUS_NOTIFICATION } from '../src/extension';
import { buildServerSettings } from '../src/settings';
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
    expect(init).toEqual(buildServerSettings((k) => vscode.settingsStore.get(k)));
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
    expect(settings.codeflow.model.nCtx).toBe(4096);
  });

  it('restarts the server when the launch command changes', async () => {
    await start();
    const first = lastClient();
    vscode.changeSettings({ 'server.command': '/opt/codeflow/bin/codeflow' });
    await new Promise((r) => setTimeout(r, 0));
    expect(first.stop).toHaveBeenCalled();
    expect(LanguageClient.instances).toHaveLength(2);
    expect(lastClient().serverOptions.command).toBe('/opt/codeflow/bin/codeflow');
    expect(first.sent).toHaveLength(0);
  });

  it('answers workspace/configuration pulls with the same object', async () => {
    vscode.settingsStore.set('hover.waitMs', 50);
    await start();
    const pull = lastClient().clientOptions.middleware.workspace.configuration;
    const [ours, other] = pull({ items: [{ section: 'codeflow' }, { section: 'python' }] });
    expect(ours.hover.waitMs).toBe(50);
    expect(other).toBeNull();
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
    expect(mw.provideInlineCompletionItems(doc('python'), {}, {}, {}, next)).toEqual(['item']);
    vscode.languageStore.set('markdown:completion.enabled', false);
    expect(mw.provideInlineCompletionItems(doc('markdown'), {}, {}, {}, next)).toBeUndefined();
    vscode.settingsStore.set('completion.disabledLanguages', ['python']);
    expect(mw.provideInlineCompletionItems(doc('python'), {}, {}, {}, next)).toBeUndefined();
  });

  it('show context sends the cursor to codeflow.showContext and opens a read-only document', async () => {
    await start();
    putCursor('app.py', 4, 7);
    lastClient().reply = {
      snippets: [{ path: 'models.py', start_line: 0, end_line: 1, text: 'class User: ...', reason: 'imported', score: 1 }],
      dropped: [],
      budget: 1024,
      used: 12,
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
    expect(vscode.shownDocuments[0].text).toContain('# Codeflow context for app.py:5');
    expect(vscode.shownDocuments[0].text).toContain('class User: ...');
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
