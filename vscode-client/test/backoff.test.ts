import { describe, expect, it } from 'vitest';
import { backoffDelay, BackoffErrorHandler } from '../src/backoff';
import { CloseAction, ErrorAction } from 'vscode-languageclient/node';

const opts = { baseMs: 100, maxMs: 1000, maxRestarts: 3, stableMs: 10000 };

function handler() {
  let now = 0;
  const slept: number[] = [];
  const log: string[] = [];
  const h = new BackoffErrorHandler((l) => log.push(l), opts, () => now, async (ms) => {
    slept.push(ms);
    now += ms;
  });
  return { h, slept, log, advance: (ms: number) => (now += ms) };
}

describe('restart with backoff', () => {
  it('doubles the delay up to the cap', () => {
    expect([0, 1, 2, 3, 4, 5].map((n) => backoffDelay(n, opts))).toEqual([100, 200, 400, 800, 1000, 1000]);
  });

  it('restarts after waiting, then gives up after repeated quick crashes', async () => {
    const { h, slept, log } = handler();
    for (let i = 0; i < 3; i++) {
      expect((await h.closed()).action).toBe(CloseAction.Restart);
    }
    expect(slept).toEqual([100, 200, 400]);
    expect(log[0]).toContain('restarting in 100 ms');
    const last = await h.closed();
    expect(last.action).toBe(CloseAction.DoNotRestart);
    expect(last.message).toContain('Restart Server');
  });

  it('forgets crashes once the server ran long enough, or after a manual restart', async () => {
    const { h, slept, advance } = handler();
    await h.closed();
    await h.closed();
    advance(20000);
    await h.closed();
    expect(slept).toEqual([100, 200, 100]);
    h.reset();
    await h.closed();
    expect(slept[3]).toBe(100);
  });

  it('shuts down after repeated transport errors', () => {
    const { h } = handler();
    expect(h.error(new Error('x'), undefined, 1).action).toBe(ErrorAction.Continue);
    expect(h.error(new Error('x'), undefined, 4).action).toBe(ErrorAction.Shutdown);
  });
});
