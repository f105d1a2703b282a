import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildLaunch, resolveCommand, venvCandidates } from '../src/launch';

let root: string;

beforeEach(() => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'cf-launch-'));
});
afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

function fakeExecutable(rel: string): string {
  const file = path.join(root, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, '#!/bin/sh\n', { mode: 0o755 });
  return file;
}

describe('finding the server', () => {
  it('prefers the workspace .venv, then venv', () => {
    const venv = fakeExecutable('venv/bin/codeflow');
    expect(resolveCommand('', [root])).toBe(venv);
    const dotVenv = fakeExecutable('.venv/bin/codeflow');
    expect(resolveCommand('', [root])).toBe(dotVenv);
  });

  it('ignores a file that is not executable', () => {
    const file = path.join(root, '.venv/bin/codeflow');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, '', { mode: 0o644 });
    expect(resolveCommand('', [root])).toBe('codeflow');
  });

  it('falls back to codeflow on PATH', () => {
    expect(resolveCommand('', [root])).toBe('codeflow');
    expect(resolveCommand('', [])).toBe('codeflow');
  });

  it('uses the configured command, expanding ${workspaceFolder}', () => {
    fakeExecutable('.venv/bin/codeflow');
    expect(resolveCommand(' /opt/cf/bin/codeflow ', [root])).toBe('/opt/cf/bin/codeflow');
    expect(resolveCommand('${workspaceFolder}/tools/codeflow', [root])).toBe(`${root}/tools/codeflow`);
  });

  it('knows the Windows layout', () => {
    expect(venvCandidates('C:/w', 'win32')[0]).toMatch(/\.venv[\\/]Scripts[\\/]codeflow\.exe$/);
  });

  it('launches "serve" with the log level and extra args, in the first folder', () => {
    const launch = buildLaunch('', ['--log-file', '/tmp/x.log'], 'debug', [root, '/other'], () => false);
    expect(launch).toEqual({
      command: 'codeflow',
      args: ['serve', '--log-level', 'debug', '--log-file', '/tmp/x.log'],
      cwd: root,
    });
  });
});
