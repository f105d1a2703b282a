// A recording fake of vscode-languageclient/node's LanguageClient (the real one needs VS Code).
import { vi } from 'vitest';

export enum State { Stopped = 1, Starting = 3, StartFailed = 4, Running = 2 }
export enum ErrorAction { Continue = 1, Shutdown = 2 }
export enum CloseAction { DoNotRestart = 1, Restart = 2 }
export const DidChangeConfigurationNotification = { type: { method: 'workspace/didChangeConfiguration' } };
export const ExecuteCommandRequest = { type: { method: 'workspace/executeCommand' } };
export const WorkDoneProgress = { type: { method: '$/progress' } };
export type CloseHandlerResult = { action: CloseAction; message?: string; handled?: boolean };
export type ErrorHandlerResult = { action: ErrorAction; message?: string; handled?: boolean };
export type ErrorHandler = {
  error(e: Error, m: unknown, c: number | undefined): ErrorHandlerResult | Promise<ErrorHandlerResult>;
  closed(): CloseHandlerResult | Promise<CloseHandlerResult>;
};
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Middleware = any;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type LanguageClientOptions = any;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ServerOptions = any;

type Handler = (params: unknown) => unknown;

export class LanguageClient {
  static instances: LanguageClient[] = [];
  state = State.Stopped;
  notifications = new Map<string, Handler>();
  progress = new Map<string, Handler>();
  sent: { method: string; params: unknown }[] = [];
  requests: { method: string; params: unknown }[] = [];
  /** What `sendRequest` answers; tests set it; a function gets the params. */
  reply: unknown = null;
  stateListeners: (() => void)[] = [];

  constructor(
    readonly id: string,
    readonly name: string,
    readonly serverOptions: ServerOptions,
    readonly clientOptions: LanguageClientOptions,
  ) {
    LanguageClient.instances.push(this);
  }

  onNotification(method: string, h: Handler) {
    this.notifications.set(method, h);
    return { dispose: () => this.notifications.delete(method) };
  }
  onProgress(_type: unknown, token: string, h: Handler) {
    this.progress.set(token, h);
    return { dispose: () => this.progress.delete(token) };
  }
  onDidChangeState(l: () => void) {
    this.stateListeners.push(l);
    return { dispose() {} };
  }
  /** Set before `start` to make it fail as the real client does (spawn ENOENT, bad initialize). */
  static failStart: Error | undefined;
  start = vi.fn(async () => {
    if (LanguageClient.failStart) {
      this.state = State.StartFailed;
      this.stateListeners.forEach((l) => l());
      throw LanguageClient.failStart;
    }
    this.state = State.Running;
    this.stateListeners.forEach((l) => l());
  });
  stop = vi.fn(async (_timeoutMs?: number) => {
    this.state = State.Stopped;
    this.stateListeners.forEach((l) => l());
  });
  async sendNotification(type: { method: string }, params: unknown) {
    this.sent.push({ method: type.method, params });
  }
  async sendRequest(type: { method: string }, params: unknown) {
    this.requests.push({ method: type.method, params });
    return typeof this.reply === 'function' ? (this.reply as Handler)(params) : this.reply;
  }
}
