--- `:checkhealth codeflow`.
local M = {}

local function check_neovim()
  if vim.fn.has('nvim-0.11') == 1 then
    vim.health.ok('Neovim ' .. tostring(vim.version()))
  else
    vim.health.error('Neovim 0.11 or newer is needed (vim.lsp.config and vim.lsp.enable)')
  end
end

local function check_command()
  local cmd = require('codeflow.config').command()
  local exe = cmd[1]
  if vim.fn.executable(exe) ~= 1 then
    vim.health.error(('server command not found: %s'):format(exe), {
      'Install codeflow into the workspace .venv, or pass cmd = { "/path/to/codeflow", "serve" } to setup()',
    })
    return
  end
  local ok, res = pcall(function()
    return vim.system({ exe, '--version' }, { text = true }):wait(15000)
  end)
  if ok and res.code == 0 then
    vim.health.ok(('%s (%s)'):format(vim.trim(res.stdout), vim.fn.exepath(exe)))
  else
    vim.health.error(('`%s --version` failed: %s'):format(exe, ok and (res.stderr or res.code) or res))
  end
end

--- What the server said is off or wrong: features it runs without (a missing chat model fails
--- every explanation, hover and action) and the errors and warnings it showed (a rejected setting).
local function check_problems(client_id, s)
  local seen = {}
  for feature, why in pairs(s and s.degraded or {}) do
    seen[why] = true
    local report = feature == 'chat model' and vim.health.error or vim.health.warn
    report(('%s: %s'):format(feature, why))
  end
  for _, m in ipairs(require('codeflow.status').problems[client_id] or {}) do
    local text = m.message:gsub('^Codeflow: ', '')
    if not seen[text] then
      seen[text] = true
      local report = m.type == vim.lsp.protocol.MessageType.Error and vim.health.error or vim.health.warn
      report(text)
    end
  end
end

local function check_clients()
  local clients = vim.lsp.get_clients({ name = 'codeflow' })
  if #clients == 0 then
    vim.health.info('no Codeflow server running yet (it starts when a supported file is opened)')
    return
  end
  for _, client in ipairs(clients) do
    local caps = client.server_capabilities or {}
    local msg = ('client %d, root %s'):format(client.id, client.root_dir or '-')
    if caps.inlineCompletionProvider then
      vim.health.ok(msg .. ': the server offers inline completion')
    else
      vim.health.warn(msg .. ': the server does not advertise inlineCompletionProvider')
    end
    local s = require('codeflow.status').by_client[client.id]
    if not s then
      vim.health.info('no codeflow/status received yet')
    elseif s.state == 'error' then
      vim.health.error(('server state: error — %s'):format(s.message))
    elseif s.state == 'fallback' then
      vim.health.warn(('server state: fallback to %s — %s'):format(s.backend, s.message))
    else
      vim.health.ok(('server state: %s (%s on %s, %s)'):format(s.state, s.backend, s.device, s.model))
    end
    check_problems(client.id, s)
  end
end

--- Entry point of `:checkhealth codeflow`.
function M.check()
  vim.health.start('codeflow')
  check_neovim()
  if not require('codeflow').did_setup then
    vim.health.warn('require("codeflow").setup{} has not been called')
  else
    vim.health.ok('setup() done')
  end
  check_command()
  local ghost = require('codeflow.ghost')
  vim.health.info(('ghost text: %s, completions %s'):format(
    ghost.native() and 'vim.lsp.inline_completion (native)' or 'codeflow extmarks',
    ghost.enabled and 'on' or 'off'
  ))
  check_clients()
end

return M
