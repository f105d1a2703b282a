// End to end: the packaged extension (codeflow.vsix) in a real VS Code (code-server 4.99.4, the web
// build of VS Code 1.99.3), in Debian's Chromium driven by playwright-core, against the real
// `codeflow serve` and its default models. It checks what a user sees: the status bar's states,
// ghost text accepted with Tab, the code-action menu, Show Context, Explain, and a failed start.
//
//   node e2e/run.mjs [--vsix codeflow.vsix] [--server /path/to/codeflow]
//
// On a failure it saves screenshots, code-server's log, the Codeflow output channel and the
// server's log under e2e/artifacts/ and exits 1. Issue 13 §1.
import { spawn, execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const { values: opts } = parseArgs({
  options: {
    vsix: { type: 'string', default: path.join(here, '..', 'codeflow.vsix') },
    server: { type: 'string', default: path.join(repo, '.venv', 'bin', 'codeflow') },
    browser: { type: 'string', default: process.env.CHROMIUM ?? '/usr/bin/chromium' },
    artifacts: { type: 'string', default: path.join(here, 'artifacts') },
  },
});
const CODE_SERVER = path.join(here, 'node_modules', 'code-server', 'out', 'node', 'entry.js');
// Model calls share the CPU with code-server and Chromium: generous, but each step is bounded.
const STEP_MS = 120_000;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'codeflow-e2e-'));
const dirs = {
  data: path.join(tmp, 'user-data'),
  ext: path.join(tmp, 'extensions'),
  ws: path.join(tmp, 'flask_app'),
};
const timings = {};
const t0 = Date.now();
let codeServer;
let codeServerLog = '';
let page;

function log(line) {
  console.log(`[e2e ${((Date.now() - t0) / 1000).toFixed(1)}s] ${line}`);
}

class CheckFailed extends Error {}

/** One assertion: a failure names what the user would have seen instead. */
function check(ok, what) {
  if (!ok) throw new CheckFailed(what);
  log(`ok: ${what.split(';')[0]}`);
}

async function freePort() {
  return new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function writeUserSettings(extra = {}) {
  const file = path.join(dirs.data, 'User', 'settings.json');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const settings = {
    // The web build auto-saves by default; the buffer check reads the file the user saved.
    'files.autoSave': 'off',
    'workbench.startupEditor': 'none',
    'workbench.tips.enabled': false,
    'security.workspace.trust.enabled': false,
    'extensions.autoCheckUpdates': false,
    'extensions.autoUpdate': false,
    'telemetry.telemetryLevel': 'off',
    'editor.inlineSuggest.enabled': true,
    'codeflow.server.command': opts.server,
    'codeflow.server.args': ['--log-file', path.join(tmp, 'server.log')],
    'codeflow.logLevel': 'debug',
    ...extra,
  };
  fs.writeFileSync(file, JSON.stringify(settings, null, 2));
}

async function startCodeServer() {
  execFileSync(process.execPath, [CODE_SERVER, '--user-data-dir', dirs.data, '--extensions-dir', dirs.ext,
    '--install-extension', opts.vsix], { stdio: 'inherit' });
  const port = await freePort();
  codeServer = spawn(process.execPath, [CODE_SERVER, '--auth', 'none', '--bind-addr', `127.0.0.1:${port}`,
    '--user-data-dir', dirs.data, '--extensions-dir', dirs.ext, '--disable-telemetry',
    '--disable-update-check', '--disable-workspace-trust', '--disable-getting-started-override', dirs.ws],
  { env: { ...process.env, XDG_CONFIG_HOME: path.join(tmp, 'config') } });
  const ready = new Promise((resolve, reject) => {
    const onData = (d) => {
      codeServerLog += String(d);
      if (codeServerLog.includes('HTTP server listening')) resolve();
    };
    codeServer.stdout.on('data', onData);
    codeServer.stderr.on('data', onData);
    codeServer.on('exit', (code) => reject(new Error(`code-server exited with ${code}: ${codeServerLog}`)));
  });
  await withTimeout(ready, 60_000, 'code-server to listen');
  return `http://127.0.0.1:${port}/?folder=${encodeURIComponent(dirs.ws)}`;
}

async function withTimeout(promise, ms, what) {
  let timer;
  const limit = new Promise((_, reject) => { timer = setTimeout(() => reject(new CheckFailed(`timed out after ${ms} ms waiting for ${what}`)), ms); });
  try {
    return await Promise.race([promise, limit]);
  } finally {
    clearTimeout(timer);
  }
}

/** The Codeflow status bar item: its codicon classes, text and tooltip (aria-label). */
async function statusItem() {
  return page.evaluate(() => {
    const item = document.querySelector('.statusbar-item[id$="codeflow.status"]');
    if (!item) return null;
    const icons = [...item.querySelectorAll('.codicon')].map((e) => e.className).join(' ');
    return { icons, text: item.textContent ?? '', label: item.getAttribute('aria-label') ?? '', html: item.innerHTML };
  });
}

/** Polls the status bar until `pred` holds, recording every distinct state seen on the way. */
async function waitStatus(pred, what, seen, ms = STEP_MS) {
  const end = Date.now() + ms;
  let last = null;
  while (Date.now() < end) {
    last = await statusItem();
    if (last && seen && seen.at(-1) !== last.icons) seen.push(last.icons);
    if (last && pred(last)) return last;
    await page.waitForTimeout(100);
  }
  throw new CheckFailed(`timed out waiting for the status bar to show ${what}; it shows ${JSON.stringify(last)}`);
}

async function palette(command) {
  await page.keyboard.press('F1');
  const input = page.locator('.quick-input-widget .quick-input-box input[type="text"]');
  await input.waitFor({ state: 'visible', timeout: 10_000 });
  await input.fill(`>${command}`);
  const row = page.locator('.quick-input-list .monaco-list-row', { hasText: command }).first();
  await row.waitFor({ state: 'visible', timeout: 10_000 });
  await row.click();
}

async function openFile(name) {
  await page.keyboard.press('Control+P');
  const input = page.locator('.quick-input-widget .quick-input-box input[type="text"]');
  await input.waitFor({ state: 'visible', timeout: 10_000 });
  await input.fill(name);
  await page.locator('.quick-input-list .monaco-list-row', { hasText: name }).first().waitFor({ timeout: 10_000 });
  await page.keyboard.press('Enter');
  await page.locator(`.tab[aria-label^="${name}"]`).first().waitFor({ timeout: 10_000 });
  await page.locator('.monaco-editor .view-lines').first().click();
}

async function goToLine(line, column) {
  await page.keyboard.press('Control+G');
  const input = page.locator('.quick-input-widget .quick-input-box input[type="text"]');
  await input.waitFor({ state: 'visible', timeout: 10_000 });
  await input.fill(column ? `:${line}:${column}` : `:${line}`);
  await page.keyboard.press('Enter');
  if (!column) await page.keyboard.press('End');
}

/** The text of the visible editor whose lines hold `needle` (Monaco renders spaces as U+00A0). */
async function editorText(needle) {
  const texts = await page.locator('.editor-instance .monaco-editor .view-lines').allTextContents();
  const plain = texts.map((t) => t.replace(/\u00a0/g, ' '));
  return plain.find((t) => t.includes(needle)) ?? plain.join('\n---\n');
}

async function waitEditorText(needle, ms = 30_000) {
  await page.waitForFunction((n) => [...document.querySelectorAll('.editor-instance .monaco-editor .view-lines')]
    .some((e) => e.textContent?.replace(/\u00a0/g, ' ').includes(n)), needle, { timeout: ms });
}

async function testStartup(url) {
  const loaded = Date.now();
  await page.goto(url);
  await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
  const seen = [];
  await waitStatus((s) => s.icons.includes('sync'), 'the loading spinner', seen, 60_000);
  const activated = Date.now();
  const ready = await waitStatus((s) => /sparkle|error|warning|disconnect/.test(s.icons), 'a settled state', seen);
  timings.activationToReadyS = (Date.now() - activated) / 1000;
  timings.pageToReadyS = (Date.now() - loaded) / 1000;
  check(ready.icons.includes('sparkle'), `the status bar says ready; it shows ${JSON.stringify(ready)}; states seen ${JSON.stringify(seen)}`);
  check(seen.some((s) => s.includes('sync')), `the status bar showed loading before ready; states seen ${JSON.stringify(seen)}`);
  check(/Codeflow: local/.test(ready.text), `the status bar names the backend; it shows ${ready.text}`);
}

async function testGhostText() {
  await openFile('app.py');
  await goToLine(28);
  // Type the assignment as a user would; automatic inline completion fires on typing.
  for (let i = 0; i < '= '.length; i++) await page.keyboard.press('Backspace');
  const typed = Date.now();
  await page.keyboard.type('= ', { delay: 60 });
  const ghost = page.locator('.monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text');
  try {
    await ghost.filter({ hasText: 'find_by_email' }).first().waitFor({ timeout: 30_000 });
  } catch {
    // Alt+\ does not reach the page in headless Chromium; the palette command does.
    log('no automatic ghost text yet; triggering it from the palette');
    await palette('Trigger Inline Suggestion');
    await ghost.filter({ hasText: 'find_by_email' }).first().waitFor({ timeout: STEP_MS });
  }
  timings.firstGhostTextS = (Date.now() - typed) / 1000;
  const shown = await ghost.allInnerTexts();
  check(shown.join('').includes('find_by_email'), `ghost text names find_by_email; shown ${JSON.stringify(shown)}`);
  await page.keyboard.press('Tab');
  await palette('File: Save');
  await page.waitForFunction(() => !document.querySelector('.tab.active.dirty'), null, { timeout: 10_000 });
  const saved = fs.readFileSync(path.join(dirs.ws, 'app.py'), 'utf8').split('\n')[27];
  check(/^ {4}user = User\.find_by_email\(/.test(saved), `Tab accepted the ghost text into the buffer; line 28 reads ${JSON.stringify(saved)}`);
}

async function testCodeActions() {
  await goToLine(16);
  await page.keyboard.press('Control+.');
  const menu = page.locator('.action-widget');
  await menu.waitFor({ state: 'visible', timeout: 30_000 });
  await menu.locator('.monaco-list-row', { hasText: '(AI)' }).first().waitFor({ timeout: 30_000 });
  const titles = await menu.locator('.monaco-list-row').allInnerTexts();
  check(titles.some((t) => t.includes('Add docstring and type hints (AI)')), `the code-action menu lists Codeflow's actions; it lists ${JSON.stringify(titles)}`);
  await page.keyboard.press('Escape');
}

async function testShowContext() {
  await goToLine(28);
  await palette('Codeflow: Show Context for the Cursor');
  await page.locator('.tab', { hasText: 'context' }).first().waitFor({ timeout: STEP_MS });
  await waitEditorText('Codeflow context');
  const text = await editorText('Codeflow context');
  check(text.includes('# Codeflow context for app.py:28') && text.includes('models.py'),
    `Show Context opens the packed context with models.py; it shows ${JSON.stringify(text.slice(0, 400))}`);
}

async function testExplain() {
  await page.locator('.tab', { hasText: 'app.py' }).first().click();
  await goToLine(14, 8); // on the name: `def re|gister():`
  const progress = [];
  await palette('Codeflow: Explain This Function');
  const toast = page.locator('.notification-toast', { hasText: 'explaining app.py' });
  await toast.first().waitFor({ timeout: 30_000 });
  const end = Date.now() + STEP_MS;
  while (Date.now() < end && (await toast.count()) > 0) {
    const text = await toast.first().innerText().catch(() => '');
    if (text && progress.at(-1) !== text) progress.push(text);
    await page.waitForTimeout(150);
  }
  await page.locator('.tab', { hasText: 'explanation' }).first().waitFor({ timeout: 30_000 });
  await waitEditorText('explanation of app.py:14');
  const text = await editorText('explanation of app.py:14');
  check(text.replace(/.*explanation of app\.py:14/, '').trim().length > 20, `Explain opens the explanation; it shows ${JSON.stringify(text.slice(0, 400))}`);
  // The server streams the text as `$/progress` on the extension's token (bug 9): the
  // notification shows more than its title while the model writes.
  const status = await statusItem();
  check(status && !/smollm/i.test(status.label), `after Explain the tooltip still names the completion model; it says ${status?.label}`);
  log(`explain notification texts: ${JSON.stringify(progress)}`);
  const streamed = (p) => p.split('\n').filter((l) => !/^(Source: .*|Cancel|Codeflow: explaining app\.py:\d+)$/.test(l.trim())).join('').trim();
  check(progress.some((p) => streamed(p).length > 0),
    `the explain notification streamed the text; it showed ${JSON.stringify(progress)}`);
}

async function testFailedStart() {
  const failure = /server command|failed to start|couldn't create connection/;
  const toasts = () => page.locator('.notification-toast', { hasText: failure }).count();
  writeUserSettings({ 'codeflow.server.command': path.join(tmp, 'no-such-dir', 'codeflow') });
  // A new window reads the settings again and starts a new extension host.
  await page.reload();
  await page.locator('.monaco-workbench').waitFor({ timeout: 60_000 });
  const failed = await waitStatus((s) => /error|disconnect/.test(s.icons), 'a failed start', null, 60_000);
  check(!failed.icons.includes('spin'), `a failed start does not spin; the status bar shows ${JSON.stringify(failed)}`);
  await page.locator('.notification-toast', { hasText: failure }).first().waitFor({ timeout: 10_000 });
  check(/no-such-dir/.test(failed.label), `the tooltip names the command that failed; it says ${failed.label}`);
  // Bug 2: one failure, one notification; give a second one the time it took the first.
  await page.waitForTimeout(2000);
  check((await toasts()) === 1, `one failure shows one notification; shown ${await toasts()}`);
}

function saveArtifacts(name) {
  fs.mkdirSync(opts.artifacts, { recursive: true });
  fs.writeFileSync(path.join(opts.artifacts, 'code-server.log'), codeServerLog);
  const server = path.join(tmp, 'server.log');
  if (fs.existsSync(server)) fs.copyFileSync(server, path.join(opts.artifacts, 'server.log'));
  const logs = path.join(dirs.data, 'logs');
  for (const file of fs.existsSync(logs) ? fs.readdirSync(logs, { recursive: true }) : []) {
    if (/Codeflow|exthost\.log|remoteagent\.log/.test(String(file))) {
      fs.copyFileSync(path.join(logs, String(file)), path.join(opts.artifacts, String(file).replace(/[\\/]/g, '_')));
    }
  }
  log(`artifacts for ${name} in ${opts.artifacts}`);
}

async function main() {
  for (const [what, file] of [['code-server (run e2e/install.sh)', CODE_SERVER], ['the .vsix', opts.vsix], ['Chromium', opts.browser]]) {
    if (!fs.existsSync(file)) throw new Error(`${what} is missing: ${file}`);
  }
  fs.rmSync(opts.artifacts, { recursive: true, force: true });
  fs.cpSync(path.join(repo, 'examples', 'flask_app'), dirs.ws, { recursive: true });
  writeUserSettings();
  const url = await startCodeServer();
  const browser = await chromium.launch({ executablePath: opts.browser, args: ['--disable-gpu'] });
  page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  const steps = [testStartup.bind(null, url), testGhostText, testCodeActions, testShowContext, testExplain, testFailedStart];
  let failed = false;
  for (const step of steps) {
    const name = step.name.replace(/^bound /, '');
    try {
      log(`${name}…`);
      await withTimeout(step(), 3 * STEP_MS, name);
    } catch (err) {
      failed = true;
      log(`FAIL ${name}: ${err instanceof Error ? err.message : String(err)}`);
      fs.mkdirSync(opts.artifacts, { recursive: true });
      await page.screenshot({ path: path.join(opts.artifacts, `${name}.png`) }).catch(() => undefined);
      saveArtifacts(name);
      break;
    }
  }
  await browser.close();
  log(`timings ${JSON.stringify(timings)}`);
  return failed ? 1 : 0;
}

let code = 1;
try {
  code = await main();
} catch (err) {
  log(`FAIL setup: ${err instanceof Error ? err.stack : String(err)}`);
  saveArtifacts('setup');
} finally {
  codeServer?.kill('SIGTERM');
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.exit(code);
