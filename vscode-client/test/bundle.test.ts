// The packaged entry point: esbuild bundles the extension and the language client into one file,
// which must load with nothing but the `vscode` module the editor provides.
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(__dirname, '..');

// Any `vscode` member is a constructible stub: enough for the bundle's top-level code.
const loader = `
const Module = require('module');
const stub = () => new Proxy(function () {}, { get: (t, k) => (k === 'prototype' ? {} : stub()) });
const orig = Module._load;
Module._load = function (req, ...rest) {
  if (req === 'vscode') return stub();
  if (!Module.isBuiltin(req) && !/^[./]/.test(req)) throw new Error('not bundled: ' + req);
  return orig.call(this, req, ...rest);
};
const ext = require(${JSON.stringify(path.join(root, 'dist', 'extension.js'))});
console.log(JSON.stringify(Object.keys(ext).sort()));
`;

describe('bundle', () => {
  it('builds and loads with only vscode external', () => {
    execFileSync(process.execPath, ['esbuild.mjs'], { cwd: root, stdio: 'pipe' });
    const out = execFileSync(process.execPath, ['-e', loader], { cwd: '/', encoding: 'utf8' });
    const exported = JSON.parse(out.trim().split('\n').pop()!);
    expect(exported).toEqual(expect.arrayContaining(['activate', 'deactivate']));
  }, 60000);
});
