--- The server's `codeflow/status` notification and `$/progress`, for statuslines and `:Codeflow status`.
local M = {}

---@class codeflow.Status
---@field backend string
---@field device string
---@field model string
---@field state string
---@field message string

---@type table<integer, codeflow.Status>
M.by_client = {}
--- The server's error and warning messages, per client, for `:checkhealth` (newest last).
---@type table<integer, {type: integer, message: string}[]>
M.problems = {}
--- The work in progress (`$/progress`) per client and token: `{ title, message?, percentage? }`.
---@type table<integer, table<string|integer, table>>
M.progress = {}

local MAX_PROBLEMS = 20
local WARNING = 2

--- Handler for `codeflow/status` (a notification: the return value is ignored).
function M.on_status(_, result, ctx)
  if type(result) ~= 'table' or type(result.state) ~= 'string' then
    return
  end
  M.by_client[ctx.client_id] = {
    backend = result.backend or 'none',
    device = result.device or '',
    model = result.model or '',
    state = result.state,
    message = result.message or '',
    -- Features that are off or work less, and why (e.g. no chat model): feature -> message.
    degraded = type(result.degraded) == 'table' and result.degraded or {},
  }
  vim.schedule(function()
    vim.api.nvim_exec_autocmds('User', { pattern = 'CodeflowStatus', modeline = false })
    pcall(vim.cmd.redrawstatus)
  end)
end

--- Handler for `window/showMessage`: remembers errors and warnings for `:checkhealth`, then
--- shows the message as Neovim does.
function M.on_message(err, result, ctx, config)
  if type(result) == 'table' and type(result.message) == 'string' and (result.type or 4) <= WARNING then
    local list = M.problems[ctx.client_id] or {}
    table.insert(list, { type = result.type, message = result.message })
    while #list > MAX_PROBLEMS do
      table.remove(list, 1)
    end
    M.problems[ctx.client_id] = list
  end
  return vim.lsp.handlers['window/showMessage'](err, result, ctx, config)
end

--- The title, message and percentage of a piece of work, as one line.
local function progress_text(p)
  local text = p.title or ''
  if p.message and p.message ~= '' then
    text = text .. ': ' .. p.message:gsub('\n', ' '):sub(-60)
  end
  return p.percentage and ('%s %d%%'):format(text, p.percentage) or text
end

--- `LspProgress` autocommand: Neovim 0.11 has no progress UI (no `vim.ui.progress`), so the
--- server's work (loading the model, indexing, explaining) shows in the statusline and the
--- message area (issue 13).
function M.on_progress(ev)
  local client = vim.lsp.get_client_by_id(ev.data.client_id)
  local value = ev.data.params and ev.data.params.value
  if not client or client.name ~= 'codeflow' or type(value) ~= 'table' then
    return
  end
  local works = M.progress[client.id] or {}
  M.progress[client.id] = works
  local token = ev.data.params.token
  if value.kind == 'end' then
    local title = (works[token] or {}).title or 'work'
    works[token] = nil
    vim.api.nvim_echo({ { ('codeflow: %s: %s'):format(title, value.message or 'done') } }, false, {})
  else
    local p = works[token] or {}
    works[token] = { title = value.title or p.title, message = value.message, percentage = value.percentage }
    vim.api.nvim_echo({ { 'codeflow: ' .. progress_text(works[token]) } }, false, {})
  end
  pcall(vim.cmd.redrawstatus)
end

--- The work in progress of a client, as one line, or nil.
function M.working(client_id)
  for _, p in pairs(M.progress[client_id] or {}) do
    return progress_text(p)
  end
  return nil
end

--- The latest status of any running Codeflow client.
---@return codeflow.Status|nil, vim.lsp.Client|nil
function M.current()
  for _, client in ipairs(vim.lsp.get_clients({ name = 'codeflow' })) do
    if M.by_client[client.id] then
      return M.by_client[client.id], client
    end
  end
  return nil, vim.lsp.get_clients({ name = 'codeflow' })[1]
end

local ICONS = { loading = '…', indexing = '…', ready = '✓', generating = '⋯', error = '✗', fallback = '!' }

--- A short text for a statusline: `codeflow ✓ local CPU`.
function M.statusline()
  local s, client = M.current()
  if not client then
    return ''
  end
  local work = M.working(client.id)
  if not s then
    return 'codeflow …' .. (work and (' ' .. work) or '')
  end
  if work then
    return ('codeflow ⋯ %s'):format(work)
  end
  local off = require('codeflow.ghost').enabled and '' or ' (off)'
  local where = table.concat(vim.tbl_filter(function(x)
    return x ~= '' and x ~= 'none'
  end, { s.backend, s.device }), ' ')
  return ('codeflow %s %s%s'):format(ICONS[s.state] or s.state, where, off)
end

--- Lines describing the client and the server state.
function M.describe()
  local s, client = M.current()
  if not client then
    return { 'codeflow: no server running (open a supported file, or see :checkhealth codeflow)' }
  end
  local lines = { ('codeflow: client %d, cmd %s'):format(client.id, table.concat(client.config.cmd, ' ')) }
  if s then
    vim.list_extend(lines, {
      ('state: %s%s'):format(s.state, s.message ~= '' and (' — ' .. s.message) or ''),
      ('backend: %s, device: %s'):format(s.backend, s.device ~= '' and s.device or '-'),
      ('model: %s'):format(s.model ~= '' and s.model or '-'),
    })
    for feature, why in pairs(s.degraded) do
      table.insert(lines, ('%s: %s'):format(feature, why))
    end
  else
    table.insert(lines, 'state: starting (no status received yet)')
  end
  local work = M.working(client.id)
  if work then
    table.insert(lines, 'working: ' .. work)
  end
  table.insert(lines, ('completions: %s'):format(require('codeflow.ghost').enabled and 'on' or 'off'))
  return lines
end

return M
