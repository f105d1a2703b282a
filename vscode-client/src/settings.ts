// The server's settings as VS Code contributes them (`codeflow.*`), and the object sent to the
// server. package.json's `contributes.configuration` is generated from the server's msgspec
// `Settings` schema (scripts/gen_configuration.py, `npm run gen-settings`), and the keys sent to
// the server are read from it here, so the extension keeps no copy of the table (issue 17, §4).
import { contributes } from '../package.json';

export type SettingType = 'string' | 'integer' | 'number' | 'boolean' | 'array';

export interface SettingSpec {
  /** Dotted key under `codeflow.`, camelCase as the server reads it. */
  readonly key: string;
  readonly type: SettingType;
  readonly default: unknown;
  readonly description: string;
  readonly enum?: readonly string[];
  readonly minimum?: number;
  readonly maximum?: number;
}

/** One `contributes.configuration.properties` entry, as the generator writes it. */
interface ContributedProperty {
  type: SettingType;
  default: unknown;
  markdownDescription: string;
  enum?: string[];
  minimum?: number;
  maximum?: number;
}

/** Sections only the extension reads (`codeflow.server.*`, `codeflow.trace.server`); never sent.
 * The generator refuses a server setting in one of them (CLIENT_PROPERTIES there). */
export const CLIENT_SECTIONS: readonly string[] = ['server', 'trace'];

const PROPERTIES = contributes.configuration.properties as Record<string, ContributedProperty>;

/** Every `codeflow.*` setting package.json contributes, server and client alike. */
export function contributedSettings(properties: Record<string, ContributedProperty> = PROPERTIES): SettingSpec[] {
  return Object.entries(properties)
    .filter(([name]) => name.startsWith('codeflow.'))
    .map(([name, p]) => ({
      key: name.slice('codeflow.'.length),
      type: p.type,
      default: p.default,
      description: p.markdownDescription,
      ...(p.enum ? { enum: p.enum } : {}),
      ...(p.minimum !== undefined ? { minimum: p.minimum } : {}),
      ...(p.maximum !== undefined ? { maximum: p.maximum } : {}),
    }));
}

/** The settings the server reads, in the order of its `Settings` struct. */
export const SERVER_SETTINGS: readonly SettingSpec[] = contributedSettings().filter(
  (s) => !CLIENT_SECTIONS.includes(s.key.split('.')[0]),
);

/** Settings that only the extension reads; they are never sent to the server. */
export const CLIENT_SETTINGS: readonly SettingSpec[] = contributedSettings().filter((s) =>
  CLIENT_SECTIONS.includes(s.key.split('.')[0]),
);

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
