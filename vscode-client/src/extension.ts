// Entry point: owns the language client, the status bar item and the commands.
import * as readline from 'node:readline';
import * as vscode from 'vscode';
import {
  DidChangeConfigurationNotification,
  ExecuteCommandRequest,
  LanguageClient,
  State,
  WorkDoneProgress,
  type LanguageClientOptions,
  type Middleware,
  type ServerOptions,
} from 'vscode-languageclient/node';
import { BackoffErrorHandler } from './backoff';
import { contextMarkdown, renderExplanation } from './contextView';
import { buildLaunch, commandMissing, resolveCommand } from './launch';
import { levelOf, TraceChannel } from './logging';
import { chooseModel } from './models';
import { buildServerSettings, completionsWanted, type ConfigGetter, type ConfigInspector } from './settings';
import { parseStatus, renderFailure, renderStatus, type CodeflowStatus, type StatusView } from './status';
import { VirtualDocs, SCHEME } from './virtualDocs';

/** Commands the extension contributes (the server's own commands keep their names). */
export const COMMANDS = {
  menu: 'codeflow.menu',
  toggle: 'codeflow.toggleCompletions',
  context: 'codeflow.showCursorContext',
  explain: 'codeflow.explain',
  log: 'codeflow.openLog',
  restart: 'codeflow.restart',
  chooseModel: 'codeflow.chooseModel',
} as const;

export const SERVER_COMMANDS = { showContext: 'codeflow.showContext', explain: 'codeflow.explainFunction' } as const;
export const STATUS_NOTIFICATION = 'codeflow/status';
// The server frees its models on `shutdown` (a llama.cpp worker among them), which takes longer
// than the client's default 2 s; past that the client SIGKILLs it (issue 13, bug 4).
export const STOP_TIMEOUT_MS = 15000;

interface CursorArg {
  uri: string;
  position: { line: number; character: number };
}

export class Codeflow implements vscode.Disposable {
  client: LanguageClient | undefined;
  status: CodeflowStatus | undefined;
  /** Why the last start failed; shown in the status bar until the next start. */
  failure: string | undefined;
  readonly output = vscode.window.createOutputChannel('Codeflow', { log: true });
  // A log channel hides trace lines below its level (Info by default), and the client sends
  // traces only when the channel's level is Trace: `codeflow.trace.server` alone decides here.
  readonly trace = new TraceChannel(vscode.window.createOutputChannel('Codeflow Trace'));
  readonly item = vscode.window.createStatusBarItem('codeflow.status', vscode.StatusBarAlignment.Right, 100);
  readonly docs = new VirtualDocs();
  readonly backoff = new BackoffErrorHandler((line) => this.output.warn(line));

  constructor() {
    this.item.name = 'Codeflow';
    this.item.command = COMMANDS.menu;
    this.render();
    this.item.show();
  }

  /** Reads `codeflow.*`, scoped to a document for language-specific values. */
  getter(scope?: vscode.ConfigurationScope): ConfigGetter {
    const cfg = vscode.workspace.getConfiguration('codeflow', scope);
    return (key) => cfg.get(key);
  }

  /** Where each `codeflow.*` value was set: the server gets only what the user set. */
  inspector(): ConfigInspector {
    const cfg = vscode.workspace.getConfiguration('codeflow');
    return (key) => cfg.inspect(key);
  }

  folders(): string[] {
    return (vscode.workspace.workspaceFolders ?? []).map((f) => f.uri.fsPath);
  }

  /** How the server process is started. */
  serverOptions(): ServerOptions {
    const get = this.getter();
    const launch = buildLaunch(
      String(get('server.command') ?? ''),
      (get('server.args') as string[] | undefined) ?? [],
      String(get('logLevel') ?? 'info'),
      this.folders(),
    );
    this.output.info(`starting: ${launch.command} ${launch.args.join(' ')}`);
    return { command: launch.command, args: launch.args, options: { cwd: launch.cwd, env: process.env } };
  }

  middleware(): Middleware {
    return {
      provideInlineCompletionItems: async (doc, pos, ctx, token, next) => {
        const get = this.getter(doc);
        if (!completionsWanted(get, doc.languageId)) {
          return undefined;
        }
        // Automatic requests wait `debounceMs`; a keystroke meanwhile cancels the token, and the
        // server never sees the stale position. An explicit trigger (the palette) goes at once.
        const wait = Number(get('completion.debounceMs') ?? 0);
        if (ctx.triggerKind === vscode.InlineCompletionTriggerKind.Automatic && wait > 0) {
          await new Promise((resolve) => setTimeout(resolve, wait));
          if (token.isCancellationRequested) {
            return undefined;
          }
        }
        return next(doc, pos, ctx, token);
      },
      // The server's explain command, run by anything else in the editor, shows its text here.
      executeCommand: (command, args, next) =>
        command === SERVER_COMMANDS.explain && args[0] ? this.explain(args[0] as CursorArg) : next(command, args),
    };
  }

  clientOptions(): LanguageClientOptions {
    return {
      documentSelector: [{ scheme: 'file' }, { scheme: 'untitled' }],
      outputChannel: this.output,
      traceOutputChannel: this.trace,
      // Server stderr is Python logging ("<time> WARNING codeflow: ..."): keep each line's level
      // instead of showing every line as an error.
      stdioOptions: {
        stdout: (input, channel) => lines(input, (line) => channel.info(line)),
        stderr: (input, channel) => lines(input, (line) => channel[levelOf(line)](line)),
      },
      initializationOptions: buildServerSettings(this.inspector()),
      errorHandler: this.backoff,
      middleware: this.middleware(),
    };
  }

  /** Starts a new client and server. */
  async start(): Promise<void> {
    this.failure = undefined;
    const options = this.serverOptions() as { command: string };
    const missing = commandMissing(options.command);
    if (missing) {
      // Not spawned at all: this is the only notification the user gets for it.
      this.fail(missing);
      void vscode.window.showErrorMessage(`Codeflow: ${missing}. ${FIX_HINT}.`);
      return;
    }
    const client = new LanguageClient('codeflow', 'Codeflow', options, this.clientOptions());
    this.client = client;
    client.onNotification(STATUS_NOTIFICATION, (params: unknown) => this.onStatus(params));
    client.onDidChangeState(() => this.render());
    try {
      await client.start();
    } catch (err) {
      // The client has already shown its own error notification (it forces one): one failure,
      // one notification. The status bar keeps the reason and the fix.
      this.fail(`the server failed to start: ${String(err)}`);
      return;
    }
    this.render();
  }

  private fail(reason: string): void {
    this.failure = reason;
    this.output.error(`${reason}. ${FIX_HINT}.`);
    this.render();
  }

  /** "Choose Model…": pull and use a preset that fits (src/models.ts), then restart on the new model. */
  async chooseModel(): Promise<void> {
    const command = resolveCommand(String(this.getter()('server.command') ?? ''), this.folders());
    try {
      const done = await chooseModel(command, {
        pick: async (items) => vscode.window.showQuickPick(items, { placeHolder: 'Presets that fit this machine' }),
        progress: (title, task) =>
          Promise.resolve(vscode.window.withProgress({ location: vscode.ProgressLocation.Notification, title }, (p) => {
            let last = 0;
            return task((fraction) => {
              p.report({ increment: (fraction - last) * 100, message: `${Math.round(fraction * 100)}%` });
              last = fraction;
            });
          })),
      }, this.folders()[0]);
      if (done) {
        this.output.info(done);
        void vscode.window.showInformationMessage(`Codeflow: ${done}`);
        await this.restart();
      }
    } catch (err) {
      this.output.error(String(err));
      void vscode.window.showErrorMessage(`Codeflow: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  /** Stops the server and starts it again, picking up a changed command. */
  async restart(): Promise<void> {
    this.backoff.reset();
    const old = this.client;
    this.client = undefined;
    this.status = undefined;
    if (old) {
      await old.stop(STOP_TIMEOUT_MS).catch((err: unknown) => this.output.warn(`stop failed: ${String(err)}`));
    }
    await this.start();
  }

  onStatus(params: unknown): void {
    const status = parseStatus(params);
    if (!status) {
      this.output.warn(`ignored malformed ${STATUS_NOTIFICATION}: ${JSON.stringify(params)}`);
      return;
    }
    this.status = status;
    this.render();
  }

  render(): void {
    const view = this.view();
    this.item.text = view.text;
    this.item.tooltip = view.tooltip;
    this.item.backgroundColor = view.background ? new vscode.ThemeColor(view.background) : undefined;
  }

  private view(): StatusView {
    // StartFailed: the spawn or `initialize` failed; the client never leaves that state.
    if (this.failure !== undefined || this.client?.state === State.StartFailed) {
      return renderFailure(this.failure ?? 'the server failed to start', FIX_HINT);
    }
    const running = this.client === undefined || this.client.state !== State.Stopped;
    return renderStatus(this.status, this.getter()('completion.enabled') !== false, running);
  }

  /** Sends the current settings to the server. */
  async onConfigChange(e: vscode.ConfigurationChangeEvent): Promise<void> {
    if (e.affectsConfiguration('codeflow.server')) {
      await this.restart();
      return;
    }
    if (!e.affectsConfiguration('codeflow')) {
      return;
    }
    this.render();
    if (this.client?.state === State.Running) {
      await this.client.sendNotification(DidChangeConfigurationNotification.type, {
        settings: buildServerSettings(this.inspector()),
      });
    }
  }

  async toggleCompletions(): Promise<void> {
    const cfg = vscode.workspace.getConfiguration('codeflow');
    const enabled = cfg.get('completion.enabled') !== false;
    await cfg.update('completion.enabled', !enabled, vscode.ConfigurationTarget.Global);
    this.render();
  }

  cursorArg(): CursorArg | undefined {
    const editor = vscode.window.activeTextEditor;
    if (!editor || editor.document.uri.scheme === SCHEME) {
      void vscode.window.showWarningMessage('Codeflow: put the cursor in a code editor first.');
      return undefined;
    }
    const { line, character } = editor.selection.active;
    return { uri: editor.document.uri.toString(), position: { line, character } };
  }

  private where(arg: CursorArg): string {
    const uri = vscode.Uri.parse(arg.uri);
    return `${vscode.workspace.asRelativePath(uri)}:${arg.position.line + 1}`;
  }

  private runningClient(): LanguageClient | undefined {
    if (this.client?.state !== State.Running) {
      void vscode.window.showWarningMessage('Codeflow: the server is not running yet.');
      return undefined;
    }
    return this.client;
  }

  /** Shows the context the model would get at the cursor, in a read-only document. */
  async showContext(arg: CursorArg | undefined = this.cursorArg()): Promise<void> {
    const client = arg && this.runningClient();
    if (!arg || !client) {
      return;
    }
    const result: unknown = await client.sendRequest(ExecuteCommandRequest.type, {
      command: SERVER_COMMANDS.showContext,
      arguments: [arg],
    });
    const markdown = contextMarkdown(result);
    if (markdown === undefined) {
      void vscode.window.showErrorMessage('Codeflow: the server returned no context for this position.');
      return;
    }
    await this.docs.show('context', markdown);
  }

  /** Explains the function at the cursor, streaming progress, then shows the text. */
  async explain(arg: CursorArg | undefined = this.cursorArg()): Promise<void> {
    const client = arg && this.runningClient();
    if (!arg || !client) {
      return;
    }
    const title = `Codeflow: explaining ${this.where(arg)}`;
    const opts = { location: vscode.ProgressLocation.Notification, title, cancellable: true };
    const result = await vscode.window.withProgress(opts, async (progress, token) => {
      const workDoneToken = `codeflow-explain-${Date.now()}`;
      const sub = client.onProgress(WorkDoneProgress.type, workDoneToken, (value) => {
        if (value.kind === 'report' && value.message) {
          progress.report({ message: value.message.slice(-120) });
        }
      });
      try {
        const params = { command: SERVER_COMMANDS.explain, arguments: [arg], workDoneToken };
        return (await client.sendRequest(ExecuteCommandRequest.type, params, token)) as { text?: string } | null;
      } finally {
        sub.dispose();
      }
    });
    if (!result?.text) {
      void vscode.window.showInformationMessage('Codeflow: no function at the cursor to explain.');
      return;
    }
    await this.docs.show('explanation', renderExplanation(result.text, this.where(arg)));
  }

  /** The quick pick behind the status bar item. */
  async menu(): Promise<void> {
    const enabled = this.getter()('completion.enabled') !== false;
    const items: (vscode.QuickPickItem & { command: string })[] = [
      { label: enabled ? '$(circle-slash) Disable completions' : '$(check) Enable completions', command: COMMANDS.toggle },
      { label: '$(list-tree) Show context for the cursor', command: COMMANDS.context },
      { label: '$(comment-discussion) Explain this function', command: COMMANDS.explain },
      { label: '$(output) Open log', command: COMMANDS.log },
      { label: '$(debug-restart) Restart server', command: COMMANDS.restart },
    ];
    const detail = this.status ? `${this.status.state} · ${this.status.backend} · ${this.status.device}` : 'starting';
    const picked = await vscode.window.showQuickPick(items, { title: `Codeflow (${detail})` });
    if (picked) {
      await vscode.commands.executeCommand(picked.command);
    }
  }

  dispose(): void {
    void this.client?.stop();
    this.item.dispose();
    this.docs.dispose();
    this.output.dispose();
    this.trace.dispose();
  }
}

const FIX_HINT = 'Set "codeflow.server.command", or install codeflow in the workspace\'s .venv';

/** Calls `each` for every line of a stream. */
function lines(input: NodeJS.ReadableStream, each: (line: string) => void): void {
  readline.createInterface({ input, crlfDelay: Infinity, terminal: false }).on('line', each);
}

/** Activation: create the controller, register everything, start the server. */
let current: Codeflow | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<Codeflow> {
  const cf = new Codeflow();
  current = cf;
  context.subscriptions.push(
    cf,
    vscode.workspace.registerTextDocumentContentProvider(SCHEME, cf.docs),
    vscode.workspace.onDidChangeConfiguration((e) => cf.onConfigChange(e)),
    vscode.commands.registerCommand(COMMANDS.menu, () => cf.menu()),
    vscode.commands.registerCommand(COMMANDS.toggle, () => cf.toggleCompletions()),
    vscode.commands.registerCommand(COMMANDS.context, () => cf.showContext()),
    vscode.commands.registerCommand(COMMANDS.explain, () => cf.explain()),
    vscode.commands.registerCommand(COMMANDS.log, () => cf.output.show(true)),
    vscode.commands.registerCommand(COMMANDS.restart, () => cf.restart()),
    vscode.commands.registerCommand(COMMANDS.chooseModel, () => cf.chooseModel()),
  );
  await cf.start();
  return cf;
}

/** Deactivation: stop the server cleanly so it is not left running. */
export async function deactivate(): Promise<void> {
  const client = current?.client;
  current = undefined;
  if (client && client.state !== State.Stopped) {
    await client.stop();
  }
}
