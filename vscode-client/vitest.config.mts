import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const mock = (name: string) => fileURLToPath(new URL(`./test/mocks/${name}`, import.meta.url));

export default defineConfig({
  resolve: {
    // VS Code provides `vscode` only inside the editor; unit tests use an in-memory stand-in, and
    // the language client (which needs `vscode`) is replaced by a recording fake.
    alias: [
      { find: /^vscode$/, replacement: mock('vscode.ts') },
      { find: /^vscode-languageclient\/node$/, replacement: mock('languageclient.ts') },
    ],
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 10000,
    hookTimeout: 180000,
  },
});
