--- Scratch buffers and floats for `codeflow.showContext` and `codeflow.explainFunction` results (the
--- server renders the context view itself: its answer's `markdown`).
local M = {}

--- Lines of markdown for an explanation.
function M.explanation(text, where)
  local out = { '# Codeflow: explanation of ' .. where, '' }
  vim.list_extend(out, vim.split(vim.trim(text), '\n', { plain = true }))
  return out
end

--- The read-only scratch buffer `codeflow://NAME`, holding `lines`.
local function scratch(name, lines)
  local bufname = 'codeflow://' .. name
  local bufnr = vim.fn.bufnr(bufname)
  if bufnr == -1 then
    bufnr = vim.api.nvim_create_buf(false, true)
    vim.api.nvim_buf_set_name(bufnr, bufname)
    vim.bo[bufnr].buftype = 'nofile'
    vim.bo[bufnr].bufhidden = 'hide'
    vim.bo[bufnr].swapfile = false
    vim.bo[bufnr].filetype = 'markdown'
  end
  vim.bo[bufnr].modifiable = true
  vim.api.nvim_buf_set_lines(bufnr, 0, -1, false, lines)
  vim.bo[bufnr].modifiable = false
  vim.bo[bufnr].modified = false
  return bufnr
end

local function float_size(lines)
  local width = 30
  for _, line in ipairs(lines) do
    width = math.max(width, vim.fn.strdisplaywidth(line))
  end
  return math.min(width, 80, vim.o.columns - 4), math.min(#lines, 20, math.max(vim.o.lines - 6, 3))
end

--- Shows `codeflow://NAME` in a floating window at the cursor, like a hover that keeps filling:
--- returns `{ win, bufnr, update(lines), close() }`. Moving the cursor closes it; updates after
--- that still reach the buffer.
function M.float(name, lines)
  local bufnr = scratch(name, lines)
  local width, height = float_size(lines)
  local win = vim.api.nvim_open_win(bufnr, false, {
    relative = 'cursor', row = 1, col = 0, width = width, height = height,
    border = 'rounded', title = ' Codeflow ', style = 'minimal',
  })
  vim.wo[win].wrap = true
  local view = { win = win, bufnr = bufnr }
  local group = vim.api.nvim_create_augroup('codeflow_float_' .. name, { clear = true })
  function view.close()
    pcall(vim.api.nvim_win_close, win, true)
    pcall(vim.api.nvim_del_augroup_by_id, group)
  end
  function view.update(new)
    scratch(name, new)
    if vim.api.nvim_win_is_valid(win) then
      local w, h = float_size(new)
      vim.api.nvim_win_set_config(win, { width = w, height = h })
    end
  end
  -- A CursorMoved for a move made before the window opened can still arrive: compare positions.
  local at = vim.api.nvim_win_get_cursor(0)
  vim.api.nvim_create_autocmd({ 'CursorMoved', 'CursorMovedI', 'BufLeave', 'InsertEnter' }, {
    group = group,
    buffer = vim.api.nvim_get_current_buf(),
    callback = function(ev)
      local here = vim.api.nvim_win_get_cursor(0)
      if ev.event:match('^CursorMoved') and here[1] == at[1] and here[2] == at[2] then
        return
      end
      view.close()
    end,
  })
  return view
end

--- Shows lines in a read-only scratch buffer named `codeflow://NAME`, in a split.
function M.show(name, lines)
  local bufnr = scratch(name, lines)
  if vim.fn.bufwinid(bufnr) == -1 then
    local win = vim.api.nvim_get_current_win()
    vim.cmd('botright vsplit')
    vim.api.nvim_win_set_buf(0, bufnr)
    vim.api.nvim_set_current_win(win)
  end
  return bufnr
end

return M
