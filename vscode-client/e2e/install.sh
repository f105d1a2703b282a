#!/usr/bin/env bash
# Installs what the end-to-end test needs into vscode-client/e2e/node_modules: code-server (a real
# VS Code, 4.99.4 = VS Code 1.99.3, the last 4.x line on Node 20) and playwright-core. The browser is
# the system's Chromium (Debian's `chromium`); Playwright's own browser download is not used.
set -euo pipefail
cd "$(dirname "$0")"
if [ -f node_modules/code-server/out/node/entry.js ] && [ -d node_modules/playwright-core ] \
    && [ -x node_modules/code-server/lib/vscode/node_modules/@vscode/ripgrep/bin/rg ]; then
    echo "e2e: code-server and playwright-core already installed"
    exit 0
fi
# code-server pins @vscode/ripgrep@1.15.11, whose postinstall downloads `rg` from GitHub; only the
# package registry is reachable, and @vscode/ripgrep-linux-x64 ships the same binary. Seed the
# download cache it checks first (download.js: $TMPDIR/vscode-ripgrep-cache-<version>/<asset>).
cache="${TMPDIR:-/tmp}/vscode-ripgrep-cache-1.15.11"
asset="$cache/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
if [ ! -s "$asset" ]; then
    work=$(mktemp -d)
    (cd "$work" && npm pack --silent @vscode/ripgrep-linux-x64@1.18.0 >/dev/null && tar xzf vscode-ripgrep-linux-x64-*.tgz)
    mkdir -p "$cache"
    tar czf "$asset" -C "$work/package/bin" rg
    rm -rf "$work"
fi
# As root, code-server's postinstall refuses to run without unsafe-perm; node-pty's postinstall
# runs `npx node-gyp` (npm_config_yes answers its prompt); native modules build against the
# system's Node headers; kerberos needs libkrb5-dev (installed by .ci/run).
export npm_config_unsafe_perm=true npm_config_yes=true npm_config_nodedir=/usr
npm install --no-audit --no-fund --no-save --foreground-scripts=false --loglevel=error
