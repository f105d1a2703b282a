--- `:Codeflow status|context|explain|restart|toggle`.
local ghost = require('codeflow.ghost')
local render = require('codeflow.render')
local status = require('codeflow.status')

local api = vim.api
local M = {}

local function notify(msg, level)
  vim.notify('codeflow: ' .. msg, level or vim.log.levels.INFO)
end

local function client_here()
  local client = vim.lsp.get_clients({ bufnr = 0, name = 'codeflow' })[1]
  if not client then
    notify('no Codeflow server is attached to this buffer', vim.log.levels.WARN)
  end
  return client
end

--- `{uri, position}` for the cursor, the argument shape of the server's commands.
local function cursor_arg(client)
  local p = vim.lsp.util.make_position_params(0, client.offset_encoding)
  return { uri = p.textDocument.uri, position = p.position }
end

local function where()
  return ('%s:%d'):format(vim.fn.fnamemodify(api.nvim_buf_get_name(0), ':.'), api.nvim_win_get_cursor(0)[1])
end

--- Shows the client and server state; returns the lines.
function M.status()
  local lines = status.describe()
  notify(table.concat(lines, '\n'):gsub('^codeflow: ', ''))
  return lines
end

--- Runs a server command for the cursor; `done(result)` gets the answer.
local function server_command(command, extra, done)
  local client = client_here()
  if not client then
    return
  end
  local params = vim.tbl_extend('force', { command = command, arguments = { cursor_arg(client) } }, extra or {})
  client:request('workspace/executeCommand', params, function(err, result)
    if err then
      notify(('%s failed: %s'):format(command, err.message or vim.inspect(err)), vim.log.levels.ERROR)
      return
    end
    done(result)
  end, 0)
end

--- Opens the context the model would get at the cursor, in a read-only buffer.
function M.context()
  local label = where()
  server_command('codeflow.showContext', nil, function(result)
    if type(result) ~= 'table' or type(result.snippets) ~= 'table' then
      notify('the server returned no context for this position', vim.log.levels.WARN)
      return
    end
    render.show('context', render.context(result, label))
  end)
end

local explain_count = 0

--- Explains the function at the cursor: progress in the message area, the text in a buffer.
function M.explain()
  explain_count = explain_count + 1
  local token = ('codeflow-explain-%d'):format(explain_count)
  local label = where()
  local group = api.nvim_create_augroup('codeflow_explain', { clear = true })
  api.nvim_create_autocmd('LspProgress', {
    group = group,
    pattern = 'report',
    callback = function(ev)
      local p = ev.data.params
      -- The server may create its own token ("Explaining NAME") instead of using ours.
      local ours = p.token == token or vim.startswith(p.value.title or '', 'Explaining')
      if ours and p.value.message then
        api.nvim_echo({ { 'codeflow: ' .. p.value.message:gsub('\n', ' '):sub(-80) } }, false, {})
      end
    end,
  })
  server_command('codeflow.explainFunction', { workDoneToken = token }, function(result)
    pcall(api.nvim_del_augroup_by_id, group)
    if type(result) ~= 'table' or type(result.text) ~= 'string' or result.text == '' then
      notify('no function at the cursor to explain', vim.log.levels.WARN)
      return
    end
    render.show('explanation', render.explanation(result.text, label))
  end)
end

--- Turns completions on or off, here and in the server.
function M.toggle()
  ghost.enabled = not ghost.enabled
  if not ghost.enabled then
    ghost.cancel()
    ghost.dismiss()
  end
  for _, client in ipairs(vim.lsp.get_clients({ name = 'codeflow' })) do
    local settings = vim.deepcopy(client.settings or {})
    settings.codeflow = settings.codeflow or {}
    settings.codeflow.completion = settings.codeflow.completion or {}
    settings.codeflow.completion.enabled = ghost.enabled
    client.settings = settings
    client:notify('workspace/didChangeConfiguration', { settings = settings })
  end
  notify('completions ' .. (ghost.enabled and 'on' or 'off'))
end

--- Stops the servers and starts them again for the open buffers.
function M.restart()
  local clients = vim.lsp.get_clients({ name = 'codeflow' })
  for _, client in ipairs(clients) do
    client:stop()
  end
  vim.wait(5000, function()
    return vim.iter(clients):all(function(c) return c:is_stopped() end)
  end, 50)
  for _, client in ipairs(clients) do
    if not client:is_stopped() then
      client:stop(true)
    end
  end
  status.by_client = {}
  vim.lsp.enable('codeflow')
  notify('restarted')
end

M.subcommands = { 'status', 'context', 'explain', 'restart', 'toggle' }

--- `:Codeflow {sub}`.
function M.run(opts)
  local sub = opts.fargs[1] or 'status'
  if not vim.tbl_contains(M.subcommands, sub) then
    notify(('unknown subcommand %q; use one of %s'):format(sub, table.concat(M.subcommands, ', ')), vim.log.levels.ERROR)
    return
  end
  M[sub]()
end

--- Completion of the subcommand names.
function M.complete(arglead)
  return vim.tbl_filter(function(s) return vim.startswith(s, arglead) end, M.subcommands)
end

return M
