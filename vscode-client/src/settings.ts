// The server's settings as VS Code contributes them (`codeflow.*`), and the object sent to the
// server. The table mirrors `lsp_server/settings.py`; a test checks package.json and the Python
// defaults against it, so the three cannot drift apart.

export type SettingType = 'string' | 'integer' | 'number' | 'boolean' | 'array';

export interface SettingSpec {
  /** Dotted key under `codeflow.`, camelCase as the server reads it. */
  readonly key: string;
  readonly type: SettingType;
  readonly default: unknown;
  readonly description: string;
  readonly enum?: readonly string[];
  readonly minimum?: number;
}

export const SERVER_SETTINGS: readonly SettingSpec[] = [
  { key: 'backend', type: 'string', default: 'auto', enum: ['auto', 'local', 'remote'], description: 'Where the model runs: a local GGUF through llama.cpp, a remote OpenAI-compatible server, or auto (remote when `codeflow.remote.url` is set and reachable, else local).' },
  { key: 'model.path', type: 'string', default: '', description: 'The completion model: a GGUF file path. Empty uses the bundled default (Gemma 3 270M Q4_K_M).' },
  { key: 'model.chatPath', type: 'string', default: 'default', description: 'The chat model for code actions and hovers: a GGUF path, or `default` for SmolLM2-135M-Instruct.' },
  { key: 'model.nCtx', type: 'integer', default: 4096, minimum: 256, description: 'Context window of the local model, in tokens.' },
  { key: 'model.nGpuLayers', type: 'integer', default: -1, minimum: -1, description: 'Layers to offload to the GPU: -1 lets the planner decide, 0 keeps everything on the CPU.' },
  { key: 'model.nThreads', type: 'integer', default: 0, minimum: 0, description: 'CPU threads for llama.cpp; 0 picks automatically.' },
  { key: 'model.kvType', type: 'string', default: 'f16', enum: ['f16', 'q8_0', 'q4_0'], description: 'Type of the KV cache.' },
  { key: 'model.inProcess', type: 'boolean', default: false, description: 'Run llama.cpp inside the server process instead of a worker process (debugging only).' },
  { key: 'model.firstTokenTimeoutS', type: 'number', default: 60.0, minimum: 1, description: 'A local model worker that sends no first token within this many seconds (prompt evaluation included) is restarted, and you are told.' },
  { key: 'model.stallTimeoutS', type: 'number', default: 15.0, minimum: 1, description: 'A local model worker that sends no next token within this many seconds is restarted, and you are told.' },
  { key: 'completion.enabled', type: 'boolean', default: true, description: 'Show inline (ghost text) completions.' },
  { key: 'completion.maxTokens', type: 'integer', default: 64, minimum: 1, description: 'Tokens generated for an automatic completion.' },
  { key: 'completion.maxTokensInvoked', type: 'integer', default: 256, minimum: 1, description: 'Tokens generated when a completion is explicitly requested.' },
  { key: 'completion.backgroundTokens', type: 'integer', default: 128, minimum: 0, description: 'Tokens generated in the background after the first line is shown, into the cache.' },
  { key: 'completion.maxLinesAutomatic', type: 'integer', default: 8, minimum: 1, description: 'The most lines an automatic (as-you-type) block shows; an invoked completion is not limited.' },
  { key: 'completion.temperature', type: 'number', default: 0.0, minimum: 0, description: 'Sampling temperature; 0 is greedy.' },
  { key: 'completion.debounceMs', type: 'integer', default: 75, minimum: 0, description: 'Wait this long after the last keystroke before generating.' },
  { key: 'completion.disabledLanguages', type: 'array', default: [], description: 'Language ids (such as `markdown` or `plaintext`) with no completions.' },
  { key: 'completion.warmDocuments', type: 'integer', default: 4, minimum: 0, description: 'Recent documents that keep a saved llama.cpp state so a switch stays warm.' },
  { key: 'context.enabled', type: 'boolean', default: true, description: 'Add cross-file context (definitions, related files) to the prompt.' },
  { key: 'context.budgetTokens', type: 'integer', default: 1024, minimum: 0, description: 'Token budget for cross-file context.' },
  { key: 'context.prefixTokens', type: 'integer', default: 1024, minimum: 0, description: 'Tokens of the current file before the cursor.' },
  { key: 'context.suffixTokens', type: 'integer', default: 256, minimum: 0, description: 'Tokens of the current file after the cursor.' },
  { key: 'context.maxFileBytes', type: 'integer', default: 1000000, minimum: 0, description: 'Files larger than this are not indexed.' },
  { key: 'context.exclude', type: 'array', default: [], description: 'Gitignore-style globs the indexer skips.' },
  { key: 'context.secretGlobs', type: 'array', default: [], description: 'Extra globs for files that never go into a prompt (on top of the built-in secret patterns).' },
  { key: 'context.cache', type: 'boolean', default: true, description: 'Cache the workspace index on disk.' },
  { key: 'remote.url', type: 'string', default: '', description: 'Base URL of an OpenAI-compatible server (vLLM, llama-server, TGI), for example `http://localhost:8000/v1`.' },
  { key: 'remote.model', type: 'string', default: '', description: 'Model name for completions on the remote server.' },
  { key: 'remote.chatModel', type: 'string', default: '', description: 'Model name for code actions and hovers on the remote server.' },
  { key: 'remote.apiKeyEnv', type: 'string', default: '', description: 'Name of the environment variable that holds the API key (never the key itself).' },
  { key: 'remote.connectTimeoutS', type: 'number', default: 5.0, minimum: 0, description: 'Connect timeout, in seconds.' },
  { key: 'remote.readTimeoutS', type: 'number', default: 30.0, minimum: 0, description: 'Read timeout, in seconds.' },
  { key: 'remote.completionDeadlineS', type: 'number', default: 10.0, minimum: 0, description: 'Overall limit for one completion request, retries included, in seconds.' },
  { key: 'remote.actionDeadlineS', type: 'number', default: 60.0, minimum: 0, description: 'Overall limit for one code action or explanation, retries included, in seconds.' },
  { key: 'remote.retries', type: 'integer', default: 2, minimum: 0, description: 'Retries for a failed request.' },
  { key: 'remote.verifyTls', type: 'boolean', default: true, description: 'Verify the server\'s TLS certificate.' },
  { key: 'remote.fimPrefix', type: 'string', default: '', description: 'The remote model\'s fill-in-the-middle prefix marker, as text (such as `<|fim_prefix|>`); empty means plain prefix completion.' },
  { key: 'remote.fimSuffix', type: 'string', default: '', description: 'The remote model\'s fill-in-the-middle suffix marker, as text.' },
  { key: 'remote.fimMiddle', type: 'string', default: '', description: 'The remote model\'s fill-in-the-middle middle marker, as text.' },
  { key: 'hover.enabled', type: 'boolean', default: true, description: 'Explain the function under the mouse in hovers.' },
  { key: 'hover.waitMs', type: 'integer', default: 300, minimum: 0, description: 'How long a hover waits for the explanation before showing what it has.' },
  { key: 'hover.explainMaxTokens', type: 'integer', default: 256, minimum: 1, description: 'Tokens the chat model may spend on one explanation.' },
  { key: 'logLevel', type: 'string', default: 'info', enum: ['debug', 'info', 'warning', 'error'], description: 'Server log level (shown in the Codeflow output channel).' },
];

/** Settings that only the extension reads; they are never sent to the server. */
export const CLIENT_SETTINGS: readonly SettingSpec[] = [
  { key: 'server.command', type: 'string', default: '', description: 'Path of the `codeflow` executable. Empty finds `.venv/bin/codeflow` or `venv/bin/codeflow` in the workspace, else `codeflow` on PATH. `${workspaceFolder}` is expanded.' },
  { key: 'server.args', type: 'array', default: [], description: 'Extra arguments after `codeflow serve`, for example `["--log-file", "/tmp/codeflow.log"]`.' },
];

/** Reads one `codeflow.*` key; `WorkspaceConfiguration.get` has this shape. */
export type ConfigGetter = (key: string) => unknown;

/** The server's wire shape: `{"codeflow": {...}}` with nested camelCase objects. */
export interface ServerSettings {
  codeflow: Record<string, unknown>;
}

function setPath(tree: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let node = tree;
  for (const part of parts.slice(0, -1)) {
    node = (node[part] ??= {}) as Record<string, unknown>;
  }
  node[parts[parts.length - 1]] = value;
}

/** What `WorkspaceConfiguration.inspect` reports for one key: where a value was set, if anywhere. */
export interface ConfigValues {
  defaultValue?: unknown;
  globalValue?: unknown;
  workspaceValue?: unknown;
  workspaceFolderValue?: unknown;
}

/** Inspects one `codeflow.*` key; `WorkspaceConfiguration.inspect` has this shape. */
export type ConfigInspector = (key: string) => ConfigValues | undefined;

/** The value the user (or the workspace) set for a key, or undefined when only the default holds. */
export function userValue(inspect: ConfigInspector, key: string): unknown {
  const v = inspect(key);
  return v?.workspaceFolderValue ?? v?.workspaceValue ?? v?.globalValue;
}

/** The settings object for initializationOptions and didChangeConfiguration: only what the user
 * set, so `codeflow.toml` and the server's defaults keep their place in the layering (README). */
export function buildServerSettings(inspect: ConfigInspector): ServerSettings {
  const codeflow: Record<string, unknown> = {};
  for (const spec of SERVER_SETTINGS) {
    const value = userValue(inspect, spec.key);
    if (value !== undefined && value !== null) {
      setPath(codeflow, spec.key, value);
    }
  }
  return { codeflow };
}

/** Every server setting at its default: the shape the Python `Settings` struct must match. */
export function defaultServerSettings(): ServerSettings {
  const codeflow: Record<string, unknown> = {};
  for (const spec of SERVER_SETTINGS) {
    setPath(codeflow, spec.key, spec.default);
  }
  return { codeflow };
}

/** Whether completions should be requested for this language, per the client-side settings. */
export function completionsWanted(get: ConfigGetter, languageId: string): boolean {
  if (get('completion.enabled') === false) {
    return false;
  }
  const disabled = get('completion.disabledLanguages');
  return !(Array.isArray(disabled) && disabled.includes(languageId));
}

/** The `contributes.configuration.properties` object for package.json. */
export function contributedProperties(): Record<string, Record<string, unknown>> {
  const props: Record<string, Record<string, unknown>> = {};
  for (const spec of [...SERVER_SETTINGS, ...CLIENT_SETTINGS]) {
    const prop: Record<string, unknown> = {
      type: spec.type,
      default: spec.default,
      markdownDescription: spec.description,
    };
    if (spec.enum) prop.enum = [...spec.enum];
    if (spec.minimum !== undefined) prop.minimum = spec.minimum;
    if (spec.type === 'array') prop.items = { type: 'string' };
    if (spec.key === 'completion.enabled' || spec.key === 'completion.disabledLanguages') {
      prop.scope = 'language-overridable';
    }
    props[`codeflow.${spec.key}`] = prop;
  }
  props['codeflow.trace.server'] = {
    type: 'string',
    enum: ['off', 'messages', 'verbose'],
    default: 'off',
    markdownDescription: 'Trace the LSP messages between VS Code and the server in the output channel.',
  };
  return props;
}
