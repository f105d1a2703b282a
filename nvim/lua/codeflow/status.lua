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
  }
  vim.schedule(function()
    vim.api.nvim_exec_autocmds('User', { pattern = 'CodeflowStatus', modeline = false })
    pcall(vim.cmd.redrawstatus)
  end)
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
  if not s then
    return 'codeflow …'
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
  else
    table.insert(lines, 'state: starting (no status received yet)')
  end
  table.insert(lines, ('completions: %s'):format(require('codeflow.ghost').enabled and 'on' or 'off'))
  return lines
end

return M
