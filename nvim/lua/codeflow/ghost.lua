--- Ghost text from `textDocument/inlineCompletion` (LSP 3.18), drawn with extmarks.
--- https://microsoft.github.io/language-server-protocol/specifications/lsp/3.18/specification/#textDocument_inlineCompletion
local config = require('codeflow.config')

local api = vim.api
local M = {}

M.ns = api.nvim_create_namespace('codeflow_ghost')
--- Completions on or off (`:Codeflow toggle`).
M.enabled = true

local METHOD = 'textDocument/inlineCompletion'
local TRIGGER = { invoked = 1, automatic = 2 }

---@class codeflow.Ghost
---@field bufnr integer
---@field row integer 0-based row of the cursor where the ghost starts
---@field col integer byte column of the cursor
---@field text string ghost text still to accept
---@field tick integer changedtick when drawn
---@field replace_end? integer[] {row, col} the item replaces up to, for a whole accept
---@field start? integer[] {row, col} the item's range start, for a whole accept
---@field partial boolean a part was accepted already
local ghost = nil
local pending = nil ---@type {client: vim.lsp.Client, id: integer}|nil
local timer = nil ---@type uv.uv_timer_t|nil
local own_tick = nil ---@type integer|nil

local function client_for(bufnr)
  return vim.lsp.get_clients({ bufnr = bufnr, name = 'codeflow' })[1]
end

--- Cancels the request in flight, if any.
function M.cancel()
  if pending then
    pcall(pending.client.cancel_request, pending.client, pending.id)
    pending = nil
  end
  if timer then
    timer:stop()
  end
end

--- Hides the ghost text.
function M.dismiss()
  if ghost and api.nvim_buf_is_valid(ghost.bufnr) then
    api.nvim_buf_clear_namespace(ghost.bufnr, M.ns, 0, -1)
  end
  ghost = nil
end

--- Whether ghost text is shown in the current buffer.
function M.visible()
  return ghost ~= nil and ghost.bufnr == api.nvim_get_current_buf() and ghost.text ~= ''
end

--- The ghost text still to accept (for tests and statuslines).
function M.text()
  return ghost and ghost.text or nil
end

local function draw()
  local g = ghost
  api.nvim_buf_clear_namespace(g.bufnr, M.ns, 0, -1)
  local lines = vim.split(g.text, '\n', { plain = true })
  local hl = config.options.ghost.hl_group
  -- "replace": with "combine", the highlight of the text under the ghost (MatchParen on the
  -- bracket just typed) leaked into it (issue 13).
  local opts = { hl_mode = 'replace', right_gravity = false }
  if lines[1] ~= '' then
    opts.virt_text = { { lines[1], hl } }
    opts.virt_text_pos = 'inline'
  end
  if #lines > 1 then
    opts.virt_lines = {}
    for i = 2, #lines do
      table.insert(opts.virt_lines, { { lines[i], hl } })
    end
  end
  api.nvim_buf_set_extmark(g.bufnr, M.ns, g.row, g.col, opts)
  g.tick = api.nvim_buf_get_changedtick(g.bufnr)
end

local function item_text(item)
  local t = item.insertText
  if type(t) == 'table' then
    t = t.value
  end
  return type(t) == 'string' and t or ''
end

--- Byte column of an LSP position in the buffer.
local function byte_col(bufnr, pos, encoding)
  local line = api.nvim_buf_get_lines(bufnr, pos.line, pos.line + 1, false)[1] or ''
  return vim.str_byteindex(line, encoding, pos.character, false)
end

--- The ghost for an item at the cursor: the insert text minus what is typed already in its range.
local function ghost_from(item, bufnr, row, col, encoding)
  local text = item_text(item)
  local g = { bufnr = bufnr, row = row, col = col, text = text, partial = false }
  local range = item.range
  if range and range.start.line == row then
    local start = byte_col(bufnr, range.start, encoding)
    local line = api.nvim_buf_get_lines(bufnr, row, row + 1, false)[1] or ''
    local typed = start < col and line:sub(start + 1, col) or ''
    if text:sub(1, #typed) ~= typed then
      return nil
    end
    g.text = text:sub(#typed + 1)
    g.start = { row, start }
    g.replace_end = { range['end'].line, math.max(byte_col(bufnr, range['end'], encoding), col) }
    g.full = text
  end
  return g.text ~= '' and g or nil
end

local REQUEST_CANCELLED, CONTENT_MODIFIED = -32800, -32801

local function on_result(ctx, err, result)
  if err and err.code ~= REQUEST_CANCELLED and err.code ~= CONTENT_MODIFIED then
    vim.notify_once('codeflow: inline completion failed: ' .. (err.message or vim.inspect(err)), vim.log.levels.WARN)
  end
  if err or not result then
    return
  end
  local bufnr = ctx.bufnr
  if bufnr ~= api.nvim_get_current_buf() or not vim.startswith(api.nvim_get_mode().mode, 'i') then
    return
  end
  if api.nvim_buf_get_changedtick(bufnr) ~= ctx.tick then
    return
  end
  local cursor = api.nvim_win_get_cursor(0)
  if cursor[1] - 1 ~= ctx.row or cursor[2] ~= ctx.col then
    return
  end
  local items = result.items or result
  for _, item in ipairs(items) do
    local g = ghost_from(item, bufnr, ctx.row, ctx.col, ctx.encoding)
    if g then
      M.dismiss()
      ghost = g
      draw()
      vim.api.nvim_exec_autocmds('User', { pattern = 'CodeflowGhost', modeline = false })
      return
    end
  end
end

--- Sends an inline completion request for the cursor, cancelling the previous one.
function M.request(trigger)
  local bufnr = api.nvim_get_current_buf()
  local client = client_for(bufnr)
  M.cancel()
  if not client or not M.enabled then
    return
  end
  local params = vim.lsp.util.make_position_params(0, client.offset_encoding)
  params.context = { triggerKind = trigger or TRIGGER.automatic }
  local cursor = api.nvim_win_get_cursor(0)
  local ctx = {
    bufnr = bufnr,
    row = cursor[1] - 1,
    col = cursor[2],
    encoding = client.offset_encoding,
    tick = api.nvim_buf_get_changedtick(bufnr),
  }
  local id
  local ok, req = client:request(METHOD, params, function(err, result)
    if pending and pending.id == id then
      pending = nil
    end
    on_result(ctx, err, result)
  end, bufnr)
  if ok then
    id = req
    pending = { client = client, id = req }
  end
end

--- Asks for a completion now, with the longer "invoked" budget.
function M.trigger()
  M.request(TRIGGER.invoked)
end

local function schedule()
  timer = timer or vim.uv.new_timer()
  timer:stop()
  timer:start(config.debounce_ms(), 0, vim.schedule_wrap(function()
    if vim.startswith(api.nvim_get_mode().mode, 'i') then
      M.request(TRIGGER.automatic)
    end
  end))
end

--- The next word of the ghost: leading space plus a run of word characters, or of other characters.
local function next_word(text)
  return text:match('^%s*[%w_]+') or text:match('^%s*[^%w_%s]+') or text:match('^%s+') or text
end

--- The rest of the line; from a line end, the newline and the next line.
local function next_line(text)
  local nl = text:find('\n', 1, true)
  if nl == 1 then
    local second = text:find('\n', 2, true)
    return second and text:sub(1, second - 1) or text
  end
  return nl and text:sub(1, nl - 1) or text
end

local function insert(bufnr, row, col, piece)
  local lines = vim.split(piece, '\n', { plain = true })
  api.nvim_buf_set_text(bufnr, row, col, row, col, lines)
  local end_row = row + #lines - 1
  local end_col = #lines == 1 and col + #piece or #lines[#lines]
  api.nvim_win_set_cursor(0, { end_row + 1, end_col })
  return end_row, end_col
end

local function accept_whole(g)
  local lines = vim.split(g.full, '\n', { plain = true })
  local s, e = g.start, g.replace_end
  api.nvim_buf_set_text(g.bufnr, s[1], s[2], e[1], e[2], lines)
  local end_row = s[1] + #lines - 1
  local end_col = #lines == 1 and s[2] + #lines[1] or #lines[#lines]
  api.nvim_win_set_cursor(0, { end_row + 1, end_col })
end

--- Accepts all of the ghost, its next word or its next line. Returns false when none is shown.
---@param what? 'all'|'word'|'line'
function M.accept(what)
  local g = ghost
  if not M.visible() then
    return false
  end
  M.cancel()
  what = what or 'all'
  if what == 'all' and g.start and not g.partial then
    M.dismiss()
    accept_whole(g)
    return true
  end
  local piece = what == 'word' and next_word(g.text) or what == 'line' and next_line(g.text) or g.text
  local rest = g.text:sub(#piece + 1)
  M.dismiss()
  local row, col = insert(g.bufnr, g.row, g.col, piece)
  if rest ~= '' then
    ghost = { bufnr = g.bufnr, row = row, col = col, text = rest, partial = true }
    draw()
    own_tick = ghost.tick
  end
  return true
end

--- After an edit: keep the ghost if the user typed its start, else ask again.
local function on_text_changed(bufnr)
  local tick = api.nvim_buf_get_changedtick(bufnr)
  if tick == own_tick then
    return
  end
  local g = ghost
  if g and g.bufnr == bufnr then
    local cursor = api.nvim_win_get_cursor(0)
    local row, col = cursor[1] - 1, cursor[2]
    if row == g.row and col > g.col then
      local typed = api.nvim_buf_get_text(bufnr, row, g.col, row, col, {})[1]
      if #typed < #g.text and g.text:sub(1, #typed) == typed then
        g.text, g.col, g.partial = g.text:sub(#typed + 1), col, true
        draw()
        return
      end
    end
  end
  M.dismiss()
  schedule()
end

--- Cursor moved without an edit: the ghost no longer applies.
local function on_cursor_moved(bufnr)
  local g = ghost
  if not g or g.bufnr ~= bufnr or api.nvim_buf_get_changedtick(bufnr) ~= g.tick then
    return
  end
  local cursor = api.nvim_win_get_cursor(0)
  if cursor[1] - 1 ~= g.row or cursor[2] ~= g.col then
    M.cancel()
    M.dismiss()
  end
end

local function map_keys(bufnr)
  local keys = config.options.keymaps
  -- Without a ghost, Tab and CTRL-] keep their meaning; the partial accepts have none of their
  -- own, and passing `<M-w>` through inserted a literal letter (issue 13).
  local function expr(lhs, fn_name, arg, passthrough)
    if not lhs then
      return
    end
    vim.keymap.set('i', lhs, function()
      if M.visible() then
        return ('<Cmd>lua require("codeflow.ghost").%s(%s)<CR>'):format(fn_name, arg and ('%q'):format(arg) or '')
      end
      return passthrough and lhs or ''
    end, { buffer = bufnr, expr = true, desc = 'codeflow: ' .. fn_name .. ' ' .. (arg or '') })
  end
  expr(keys.accept, 'accept', 'all', true)
  expr(keys.accept_word, 'accept', 'word', false)
  expr(keys.accept_line, 'accept', 'line', false)
  expr(keys.dismiss, 'dismiss', nil, true)
  if keys.trigger then
    vim.keymap.set('i', keys.trigger, M.trigger, { buffer = bufnr, desc = 'codeflow: ask for a completion' })
  end
end

--- Native inline completion (Neovim 0.12+): the editor draws and accepts.
local function attach_native(bufnr, client)
  vim.lsp.inline_completion.enable(true, { bufnr = bufnr, client_id = client.id })
  local accept = config.options.keymaps.accept
  if accept then
    vim.keymap.set('i', accept, function()
      if not vim.lsp.inline_completion.get() then
        return accept
      end
    end, { buffer = bufnr, expr = true, desc = 'codeflow: accept' })
  end
end

--- Whether this Neovim draws inline completions itself and the user wants that.
function M.native()
  return config.options.ghost.native and vim.lsp.inline_completion ~= nil
end

--- Sets up ghost text in a buffer the Codeflow client attached to.
function M.attach(bufnr, client)
  if not config.options.ghost.enabled then
    return
  end
  if M.native() then
    return attach_native(bufnr, client)
  end
  local group = api.nvim_create_augroup('codeflow_ghost_' .. bufnr, { clear = true })
  api.nvim_create_autocmd({ 'TextChangedI', 'TextChangedP' }, {
    group = group, buffer = bufnr, callback = function() on_text_changed(bufnr) end,
  })
  api.nvim_create_autocmd('CursorMovedI', {
    group = group, buffer = bufnr, callback = function() on_cursor_moved(bufnr) end,
  })
  -- `A` on an unfinished line is a request for a completion, before any key is typed.
  api.nvim_create_autocmd('InsertEnter', { group = group, buffer = bufnr, callback = schedule })
  api.nvim_create_autocmd({ 'InsertLeave', 'BufLeave' }, {
    group = group, buffer = bufnr, callback = function() M.cancel() M.dismiss() end,
  })
  map_keys(bufnr)
  -- Keys typed while the server was starting changed nothing we saw: ask now.
  if bufnr == api.nvim_get_current_buf() and vim.startswith(api.nvim_get_mode().mode, 'i') then
    schedule()
  end
end

--- Removes the autocommands of a buffer the client detached from.
function M.detach(bufnr)
  pcall(api.nvim_del_augroup_by_name, 'codeflow_ghost_' .. bufnr)
  if ghost and ghost.bufnr == bufnr then
    M.cancel()
    M.dismiss()
  end
end

M._next_word = next_word
M._next_line = next_line

return M
