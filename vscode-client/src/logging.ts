// Where the server's stderr and the LSP trace go in the output panel (issue 13, bug 3).
import type * as vscode from 'vscode';

export type LineLevel = 'trace' | 'debug' | 'info' | 'warn' | 'error';

// Python logging's level names, as `codeflow serve` formats them ("<time> WARNING codeflow: ...").
const LEVELS: readonly [RegExp, LineLevel][] = [
  [/\b(ERROR|CRITICAL)\b/, 'error'],
  [/\bWARNING\b/, 'warn'],
  [/\bDEBUG\b/, 'debug'],
];

/** The log level of one server stderr line: its Python level, else info (tracebacks, prints). */
export function levelOf(line: string): LineLevel {
  const head = line.slice(0, 40); // the level comes after the timestamp, never in the message
  return LEVELS.find(([re]) => re.test(head))?.[1] ?? 'info';
}

/** The client's trace channel: always at Trace level, so `codeflow.trace.server` alone decides
 * what is traced (the client traces only into a channel whose level is Trace). */
export class TraceChannel {
  readonly logLevel = 1; // vscode.LogLevel.Trace
  readonly name: string;
  readonly onDidChangeLogLevel = () => ({ dispose() {} });

  constructor(private readonly channel: vscode.OutputChannel) {
    this.name = channel.name;
  }

  trace(message: string): void {
    this.channel.appendLine(message);
  }
  debug(message: string): void {
    this.channel.appendLine(message);
  }
  info(message: string): void {
    this.channel.appendLine(message);
  }
  warn(message: string): void {
    this.channel.appendLine(message);
  }
  error(error: string | Error): void {
    this.channel.appendLine(String(error));
  }
  append(value: string): void {
    this.channel.append(value);
  }
  appendLine(value: string): void {
    this.channel.appendLine(value);
  }
  replace(value: string): void {
    this.channel.replace(value);
  }
  clear(): void {
    this.channel.clear();
  }
  show(columnOrPreserveFocus?: vscode.ViewColumn | boolean, preserveFocus?: boolean): void {
    this.channel.show(typeof columnOrPreserveFocus === 'boolean' ? columnOrPreserveFocus : preserveFocus);
  }
  hide(): void {
    this.channel.hide();
  }
  dispose(): void {
    this.channel.dispose();
  }
}
