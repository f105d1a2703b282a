--- `:Codeflow status|context|explain|restart|toggle|model`.
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

--- Opens the context the model would get at the cursor, in a read-only buffer: the markdown the
--- server rendered, as it is.
function M.context()
  server_command('codeflow.showContext', nil, function(result)
    if type(result) ~= 'table' or type(result.markdown) ~= 'string' or result.markdown == '' then
      notify('the server returned no context for this position', vim.log.levels.WARN)
      return
    end
    render.show('context', vim.split(result.markdown:gsub('\n$', ''), '\n', { plain = true }))
  end)
end

local explain_count = 0

--- Explains the function at the cursor (or around it) in a floating window that fills as the
--- model writes (the server streams the text as `$/progress` reports); the whole text ends in
--- the `codeflow://explanation` buffer.
function M.explain()
  explain_count = explain_count + 1
  local token = ('codeflow-explain-%d'):format(explain_count)
  local label = where()
  local view = render.float('explanation', render.explanation('_being written…_', label))
  local group = api.nvim_create_augroup('codeflow_explain', { clear = true })
  api.nvim_create_autocmd('LspProgress', {
    group = group,
    pattern = 'report',
    callback = function(ev)
      local p = ev.data.params
      if p.token == token and type(p.value.message) == 'string' and p.value.message ~= '' then
        view.update(render.explanation(p.value.message, label))
      end
    end,
  })
  server_command('codeflow.explainFunction', { workDoneToken = token }, function(result)
    pcall(api.nvim_del_augroup_by_id, group)
    if type(result) == 'table' and type(result.error) == 'string' then
      -- The server told the user why (once); say it here too, without another popup.
      view.update(render.explanation('_explanation failed: ' .. result.error .. '_', label))
      return
    end
    if type(result) ~= 'table' or type(result.text) ~= 'string' or result.text == '' then
      view.close()
      notify('no function at the cursor to explain', vim.log.levels.WARN)
      return
    end
    view.update(render.explanation(result.text, label))
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

--- The codeflow CLI: the configured command up to its `serve`, or the found executable.
local function cli(...)
  local config = require('codeflow.config')
  local out = {}
  for _, arg in ipairs(config.options.cmd or { config.find_executable() or 'codeflow' }) do
    if arg == 'serve' then
      break
    end
    table.insert(out, arg)
  end
  return vim.list_extend(out, { ... })
end

local function last_line(text)
  local lines = vim.split(vim.trim(text or ''), '\n')
  return lines[#lines]
end

--- `codeflow model pull --json` with progress every 25%, then `model use`, then a restart.
local function pull_and_use(name, quant)
  local shown = -1
  local function on_stdout(_, data)
    for line in (data or ''):gmatch('[^\n]+') do
      local ok, ev = pcall(vim.json.decode, line)
      if ok and type(ev) == 'table' and ev.event == 'progress' and ev.total > 0 then
        local pct = math.floor(ev.done * 4 / ev.total) * 25
        if pct > shown then
          shown = pct
          vim.schedule(function() notify(('downloading %s %s: %d%%'):format(name, quant, pct)) end)
        end
      end
    end
  end
  notify(('downloading %s %s…'):format(name, quant))
  vim.system(cli('model', 'pull', name, '--quant', quant, '--json'), { text = true, stdout = on_stdout },
    vim.schedule_wrap(function(pulled)
      if pulled.code ~= 0 then
        return notify('download failed: ' .. last_line(pulled.stderr), vim.log.levels.ERROR)
      end
      vim.system(cli('model', 'use', name, '--quant', quant), { text = true }, vim.schedule_wrap(function(used)
        if used.code ~= 0 then
          return notify('model use failed: ' .. last_line(used.stderr), vim.log.levels.ERROR)
        end
        notify(last_line(used.stdout))
        M.restart()
      end))
    end))
end

--- `:Codeflow model`: choose a preset that fits this machine, download it and use it (issue 15).
function M.model()
  vim.system(cli('model', 'list', '--json'), { text = true }, vim.schedule_wrap(function(res)
    if res.code ~= 0 then
      return notify('model list failed: ' .. last_line(res.stderr), vim.log.levels.ERROR)
    end
    local rows = vim.tbl_filter(function(r)
      return r.fits and r.remote == '' and type(r.recommended_quant) == 'string'
    end, vim.json.decode(res.stdout))
    if #rows == 0 then
      return notify('no preset fits this machine; see `codeflow plan --recommend`', vim.log.levels.WARN)
    end
    vim.ui.select(rows, {
      prompt = 'Codeflow model',
      format_item = function(r)
        return ('%s  %s  (%s, %.1fB)'):format(r.name, r.recommended_quant, r.role, r.params_b)
      end,
    }, function(row)
      if row then
        pull_and_use(row.name, row.recommended_quant)
      end
    end)
  end))
end

M.subcommands = { 'status', 'context', 'explain', 'restart', 'toggle', 'model' }

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
