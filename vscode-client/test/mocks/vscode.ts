// An in-memory stand-in for the parts of the `vscode` API the extension uses.
import { vi } from 'vitest';

type Listener<T> = (e: T) => unknown;

export class EventEmitter<T> {
  listeners: Listener<T>[] = [];
  event = (l: Listener<T>) => {
    this.listeners.push(l);
    return { dispose: () => (this.listeners = this.listeners.filter((x) => x !== l)) };
  };
  fire(e: T): void {
    this.listeners.forEach((l) => l(e));
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class Uri {
  constructor(readonly scheme: string, readonly path: string) {}
  static file(p: string): Uri {
    return new Uri('file', p);
  }
  static parse(s: string): Uri {
    const m = /^([a-z-]+):(?:\/\/)?(.*)$/.exec(s);
    return m ? new Uri(m[1], m[2]) : new Uri('file', s);
  }
  static from(c: { scheme: string; path: string }): Uri {
    return new Uri(c.scheme, c.path);
  }
  get fsPath(): string {
    return this.path;
  }
  toString(): string {
    return this.scheme === 'file' ? `file://${this.path}` : `${this.scheme}:${this.path}`;
  }
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export enum StatusBarAlignment { Left = 1, Right = 2 }
export enum ProgressLocation { SourceControl = 1, Window = 10, Notification = 15 }
export enum ViewColumn { Active = -1, Beside = -2, One = 1 }
export enum InlineCompletionTriggerKind { Invoke = 0, Automatic = 1 }
export enum LogLevel { Off = 0, Trace = 1, Debug = 2, Info = 3, Warning = 4, Error = 5 }
export enum ConfigurationTarget { Global = 1, Workspace = 2, WorkspaceFolder = 3 }

/** The settings store behind `workspace.getConfiguration('codeflow')`, keyed without `codeflow.`. */
export const settingsStore = new Map<string, unknown>();
/** Per-language overrides: `${languageId}:${key}`. */
export const languageStore = new Map<string, unknown>();
const configEmitter = new EventEmitter<{ affectsConfiguration: (s: string) => boolean }>();

/** Changes settings as the user would, firing onDidChangeConfiguration. */
export function changeSettings(values: Record<string, unknown>): void {
  Object.entries(values).forEach(([k, v]) => settingsStore.set(k, v));
  const keys = Object.keys(values).map((k) => `codeflow.${k}`);
  configEmitter.fire({ affectsConfiguration: (s) => keys.some((k) => k === s || k.startsWith(`${s}.`)) });
}

export const registeredCommands = new Map<string, (...args: unknown[]) => unknown>();
export const shownDocuments: { uri: Uri; text: string }[] = [];
export const messages: { level: string; text: string }[] = [];
let provider: { provideTextDocumentContent(uri: Uri): string } | undefined;

function outputChannel(name: string) {
  const lines: string[] = [];
  const log = (level: string) => (line: string) => lines.push(`[${level}] ${line}`);
  return {
    name, lines, info: log('info'), warn: log('warn'), error: log('error'), debug: log('debug'),
    trace: log('trace'), appendLine: log('info'), append: log('info'), show: vi.fn(), hide: vi.fn(),
    clear: vi.fn(), replace: vi.fn(), dispose: vi.fn(), logLevel: 2, onDidChangeLogLevel: new EventEmitter().event,
  };
}

export const window = {
  activeTextEditor: undefined as unknown,
  createOutputChannel: vi.fn(outputChannel),
  createStatusBarItem: vi.fn((id: string) => ({
    id, text: '', tooltip: '', command: undefined as unknown, name: '', backgroundColor: undefined as unknown,
    show: vi.fn(), hide: vi.fn(), dispose: vi.fn(),
  })),
  showQuickPick: vi.fn(async (_items?: unknown, _opts?: unknown): Promise<unknown> => undefined),
  showWarningMessage: vi.fn(async (text: string) => void messages.push({ level: 'warning', text })),
  showErrorMessage: vi.fn(async (text: string) => void messages.push({ level: 'error', text })),
  showInformationMessage: vi.fn(async (text: string) => void messages.push({ level: 'info', text })),
  withProgress: vi.fn(async (_o: unknown, task: (p: unknown, t: unknown) => Promise<unknown>) =>
    task({ report: vi.fn() }, { isCancellationRequested: false, onCancellationRequested: () => ({ dispose() {} }) })),
  showTextDocument: vi.fn(async (doc: { uri: Uri; getText(): string }) => {
    shownDocuments.push({ uri: doc.uri, text: doc.getText() });
  }),
};

export const workspace = {
  workspaceFolders: [] as { uri: Uri; name: string; index: number }[],
  getConfiguration: vi.fn((_section: string, scope?: { languageId?: string }) => ({
    get: (key: string, dflt?: unknown) => {
      const lang = scope?.languageId;
      if (lang && languageStore.has(`${lang}:${key}`)) return languageStore.get(`${lang}:${key}`);
      return settingsStore.has(key) ? settingsStore.get(key) : dflt;
    },
    // What the user set is the global value; the mock has no workspace layer.
    inspect: (key: string) => ({ key: `codeflow.${key}`, globalValue: settingsStore.get(key) }),
    update: vi.fn(async (key: string, value: unknown) => changeSettings({ [key]: value })),
  })),
  onDidChangeConfiguration: configEmitter.event,
  registerTextDocumentContentProvider: vi.fn((_scheme: string, p: typeof provider) => {
    provider = p;
    return { dispose() {} };
  }),
  openTextDocument: vi.fn(async (uri: Uri) => ({ uri, getText: () => provider?.provideTextDocumentContent(uri) ?? '' })),
  asRelativePath: (uri: Uri) => {
    const root = workspace.workspaceFolders[0]?.uri.path;
    return root && uri.path.startsWith(`${root}/`) ? uri.path.slice(root.length + 1) : uri.path;
  },
};

export const commands = {
  registerCommand: vi.fn((id: string, fn: (...args: unknown[]) => unknown) => {
    if (registeredCommands.has(id)) throw new Error(`command '${id}' already exists`);
    registeredCommands.set(id, fn);
    return { dispose: () => registeredCommands.delete(id) };
  }),
  executeCommand: vi.fn(async (id: string, ...args: unknown[]) => {
    const fn = registeredCommands.get(id);
    if (!fn) throw new Error(`command '${id}' not found`);
    return fn(...args);
  }),
};

/** Clears all recorded state between tests. */
export function resetMock(): void {
  settingsStore.clear();
  languageStore.clear();
  registeredCommands.clear();
  shownDocuments.length = 0;
  messages.length = 0;
  configEmitter.listeners = [];
  window.activeTextEditor = undefined;
  workspace.workspaceFolders = [];
  vi.clearAllMocks();
}
