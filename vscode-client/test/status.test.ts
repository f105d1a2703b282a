import { describe, expect, it } from 'vitest';
import { parseStatus, renderStatus, type CodeflowStatus } from '../src/status';

const base: CodeflowStatus = {
  backend: 'local',
  device: 'CUDA0 (H100)',
  model: '/models/gemma-3-270m-Q4_K_M.gguf',
  state: 'ready',
  message: '',
};

describe('status bar rendering', () => {
  it('shows backend and device when ready, and the model in the tooltip', () => {
    const v = renderStatus(base, true);
    expect(v.text).toBe('$(sparkle) Codeflow: local · CUDA0 (H100)');
    expect(v.tooltip).toContain('Model: gemma-3-270m-Q4_K_M');
    expect(v.tooltip).toContain('Codeflow — ready');
    expect(v.background).toBeUndefined();
  });

  it('shows the recommended models while the embedded demo model is in use', () => {
    const advice = 'The embedded model is a demo. This machine could run: completion: qwen2.5-coder-0.5b IQ4_XS';
    expect(renderStatus(base, true).tooltip).not.toContain('Choose Model');
    const parsed = parseStatus({ ...base, degraded: {}, recommendation: advice });
    expect(parsed?.recommendation).toBe(advice);
    const v = renderStatus(parsed, true);
    expect(v.tooltip).toContain(advice);
    expect(v.tooltip).toContain('Codeflow: Choose Model…');
  });

  it('spins while loading or indexing and shows the message', () => {
    const v = renderStatus({ ...base, state: 'indexing', message: '120/300 files' }, true);
    expect(v.text.startsWith('$(sync~spin)')).toBe(true);
    expect(v.tooltip).toContain('120/300 files');
  });

  it('marks errors and fallbacks with a background', () => {
    expect(renderStatus({ ...base, state: 'error' }, true).background).toBe('statusBarItem.errorBackground');
    const fb = renderStatus({ ...base, backend: 'remote', state: 'fallback' }, true);
    expect(fb.background).toBe('statusBarItem.warningBackground');
    expect(fb.text).toContain('remote');
  });

  it('shows when completions are off', () => {
    const v = renderStatus(base, false);
    expect(v.text.startsWith('$(circle-slash)')).toBe(true);
    expect(v.tooltip).toContain('completions off');
  });

  it('leaves out a "none" backend and shows a stopped server', () => {
    expect(renderStatus({ ...base, backend: 'none', device: '' }, true).text).toBe('$(sparkle) Codeflow');
    expect(renderStatus(base, true, false).text).toContain('debug-disconnect');
    expect(renderStatus(undefined, true).tooltip).toContain('starting');
  });

  it('parses the notification defensively', () => {
    expect(parseStatus({ ...base })).toEqual(base);
    expect(parseStatus({ state: 'generating' })).toEqual({
      backend: 'none', device: '', model: '', state: 'generating', message: '',
    });
    expect(parseStatus({ ...base, state: 'bogus' })).toBeUndefined();
    expect(parseStatus(null)).toBeUndefined();
    expect(parseStatus('ready')).toBeUndefined();
  });
});
