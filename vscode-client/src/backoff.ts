// Restart the server with exponential backoff when it dies; give up after repeated quick crashes.
import {
  CloseAction,
  ErrorAction,
  type CloseHandlerResult,
  type ErrorHandler,
  type ErrorHandlerResult,
} from 'vscode-languageclient/node';

export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
  maxRestarts: number;
  /** A server that ran this long counts as healthy again and resets the count. */
  stableMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1000, maxMs: 30000, maxRestarts: 6, stableMs: 120000 };

/** The delay before restart number `attempt` (0-based). */
export function backoffDelay(attempt: number, opts: BackoffOptions = DEFAULT_BACKOFF): number {
  return Math.min(opts.maxMs, opts.baseMs * 2 ** attempt);
}

export class BackoffErrorHandler implements ErrorHandler {
  private restarts = 0;
  private startedAt: number;

  constructor(
    private readonly log: (line: string) => void,
    private readonly opts: BackoffOptions = DEFAULT_BACKOFF,
    private readonly now: () => number = Date.now,
    private readonly sleep: (ms: number) => Promise<void> = (ms) => new Promise((r) => setTimeout(r, ms)),
  ) {
    this.startedAt = now();
  }

  /** Forget earlier crashes, as after a manual restart. */
  reset(): void {
    this.restarts = 0;
    this.startedAt = this.now();
  }

  /** Errors writing to or reading from the server: give a few chances, then shut down. */
  error(_error: Error, _message: unknown, count: number | undefined): ErrorHandlerResult {
    return { action: count !== undefined && count <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown };
  }

  /** The server exited: wait, then restart, unless it keeps crashing. */
  async closed(): Promise<CloseHandlerResult> {
    if (this.now() - this.startedAt >= this.opts.stableMs) {
      this.restarts = 0;
    }
    if (this.restarts >= this.opts.maxRestarts) {
      return {
        action: CloseAction.DoNotRestart,
        message: `The Codeflow server crashed ${this.restarts + 1} times in a row; see the Codeflow log, then run "Codeflow: Restart Server".`,
      };
    }
    const delay = backoffDelay(this.restarts, this.opts);
    this.restarts += 1;
    this.log(`server exited; restarting in ${delay} ms (attempt ${this.restarts} of ${this.opts.maxRestarts})`);
    await this.sleep(delay);
    this.startedAt = this.now();
    return { action: CloseAction.Restart, handled: true };
  }
}
