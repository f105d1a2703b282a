// How the extension starts `codeflow serve`: which executable, with which arguments.
import * as fs from 'node:fs';
import * as path from 'node:path';

export interface Launch {
  readonly command: string;
  readonly args: string[];
  readonly cwd?: string;
}

function isExecutable(file: string): boolean {
  try {
    fs.accessSync(file, fs.constants.X_OK);
    return fs.statSync(file).isFile();
  } catch {
    return false;
  }
}

/** The virtualenv locations checked in a workspace folder, in order. */
export function venvCandidates(folder: string, platform: NodeJS.Platform = process.platform): string[] {
  const bin = platform === 'win32' ? ['Scripts', 'codeflow.exe'] : ['bin', 'codeflow'];
  return ['.venv', 'venv'].map((venv) => path.join(folder, venv, ...bin));
}

/** The executable: the configured one, else a workspace virtualenv's, else `codeflow` on PATH. */
export function resolveCommand(
  configured: string,
  folders: readonly string[],
  exists: (file: string) => boolean = isExecutable,
): string {
  if (configured.trim()) {
    const folder = folders[0] ?? '';
    return configured.trim().replace(/\$\{workspaceFolder\}/g, folder);
  }
  for (const folder of folders) {
    const found = venvCandidates(folder).find(exists);
    if (found) {
      return found;
    }
  }
  return 'codeflow';
}

/** The full launch: `<command> serve --log-level LEVEL [extra args]`, run in the first folder. */
export function buildLaunch(
  configured: string,
  extraArgs: readonly string[],
  logLevel: string,
  folders: readonly string[],
  exists?: (file: string) => boolean,
): Launch {
  return {
    command: resolveCommand(configured, folders, exists),
    args: ['serve', '--log-level', logLevel, ...extraArgs],
    cwd: folders[0],
  };
}

/** Why `command` cannot be spawned (not executable, or not on PATH), or undefined when it can. */
export function commandMissing(
  command: string,
  envPath: string = process.env.PATH ?? '',
  exists: (file: string) => boolean = isExecutable,
): string | undefined {
  if (command.includes('/') || command.includes(path.sep)) {
    return exists(command) ? undefined : `the server command ${command} is not an executable file`;
  }
  const found = envPath.split(path.delimiter).some((dir) => dir && exists(path.join(dir, command)));
  return found ? undefined : `the server command ${command} is not on PATH`;
}
