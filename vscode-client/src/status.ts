// Rendering of the server's `codeflow/status` notification for the status bar.

export type ServerState = 'loading' | 'indexing' | 'ready' | 'generating' | 'error' | 'fallback';

/** Params of the `codeflow/status` notification. */
export interface CodeflowStatus {
  backend: 'local' | 'remote' | 'none';
  device: string;
  model: string;
  state: ServerState;
  message: string;
  /** Set while the embedded demo model is in use: what this machine could run instead. */
  recommendation?: string;
}

export interface StatusView {
  text: string;
  tooltip: string;
  background?: 'statusBarItem.errorBackground' | 'statusBarItem.warningBackground';
}

const ICONS: Record<ServerState, string> = {
  loading: '$(sync~spin)',
  indexing: '$(sync~spin)',
  ready: '$(sparkle)',
  generating: '$(loading~spin)',
  error: '$(error)',
  fallback: '$(warning)',
};

function shortModel(model: string): string {
  const base = model.split(/[\\/]/).pop() ?? model;
  return base.replace(/\.gguf$/i, '');
}

/** The status bar text and tooltip for a status (undefined: the server has not reported yet). */
export function renderStatus(
  status: CodeflowStatus | undefined,
  completionsEnabled: boolean,
  serverRunning = true,
): StatusView {
  if (!serverRunning) {
    return {
      text: '$(debug-disconnect) Codeflow',
      tooltip: 'Codeflow: the server is not running. Click for actions.',
      background: 'statusBarItem.errorBackground',
    };
  }
  if (!status) {
    const icon = completionsEnabled ? '$(sync~spin)' : '$(circle-slash)';
    return { text: `${icon} Codeflow`, tooltip: 'Codeflow: starting the server…' };
  }
  const icon = completionsEnabled ? ICONS[status.state] ?? '$(question)' : '$(circle-slash)';
  const where = [status.backend, status.device].filter((s) => s && s !== 'none').join(' · ');
  const text = `${icon} Codeflow${where ? `: ${where}` : ''}`;
  const lines = [
    `Codeflow — ${status.state}${completionsEnabled ? '' : ' (completions off)'}`,
    `Backend: ${status.backend}`,
    `Device: ${status.device || '-'}`,
    `Model: ${shortModel(status.model) || '-'}`,
  ];
  if (status.message) {
    lines.push(status.message);
  }
  if (status.recommendation) {
    lines.push(status.recommendation, 'Run "Codeflow: Choose Model…" to install one.');
  }
  lines.push('Click for actions.');
  const view: StatusView = { text, tooltip: lines.join('\n') };
  if (status.state === 'error') {
    view.background = 'statusBarItem.errorBackground';
  } else if (status.state === 'fallback') {
    view.background = 'statusBarItem.warningBackground';
  }
  return view;
}

/** The status bar after a failed start: an error, not a spinner, with the reason and the fix. */
export function renderFailure(reason: string, hint: string): StatusView {
  return {
    text: '$(error) Codeflow',
    tooltip: `Codeflow: ${reason}.\n${hint}, then run "Codeflow: Restart Server".\nClick for actions.`,
    background: 'statusBarItem.errorBackground',
  };
}

/** Checks the shape of a notification's params; the server is another process. */
export function parseStatus(params: unknown): CodeflowStatus | undefined {
  if (typeof params !== 'object' || params === null) {
    return undefined;
  }
  const p = params as Record<string, unknown>;
  if (typeof p.state !== 'string' || !(p.state in ICONS)) {
    return undefined;
  }
  const str = (v: unknown): string => (typeof v === 'string' ? v : '');
  const backend = ['local', 'remote', 'none'].includes(str(p.backend)) ? str(p.backend) : 'none';
  return {
    backend: backend as CodeflowStatus['backend'],
    device: str(p.device),
    model: str(p.model),
    state: p.state as ServerState,
    message: str(p.message),
    ...(str(p.recommendation) ? { recommendation: str(p.recommendation) } : {}),
  };
}
