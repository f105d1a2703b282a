--- Markdown for `codeflow.showContext` and `codeflow.explainFunction` results.
local M = {}

local FENCE_LANG = {
  py = 'python', js = 'javascript', ts = 'typescript', tsx = 'tsx', jsx = 'jsx', go = 'go',
  rs = 'rust', java = 'java', c = 'c', h = 'c', cpp = 'cpp', hpp = 'cpp', lua = 'lua',
}

local function fence(text)
  local ticks = '```'
  while text:find(ticks, 1, true) do
    ticks = ticks .. '`'
  end
  return ticks
end

local function dropped_line(d)
  if type(d) ~= 'table' then
    return tostring(d)
  end
  local where = d.path and (d.start_line and ('%s:%d'):format(d.path, d.start_line + 1) or d.path) or nil
  local parts = vim.tbl_filter(function(x) return x ~= nil and x ~= '' end, { where, d.reason })
  return #parts > 0 and table.concat(parts, ' — ') or vim.json.encode(d)
end

--- Lines of markdown for the context the model would get at `where`.
function M.context(result, where)
  local out = { '# Codeflow context for ' .. where, '' }
  local snippets = result.snippets or {}
  table.insert(out, ('%d snippets, %d of %d tokens used.'):format(#snippets, result.used or 0, result.budget or 0))
  table.insert(out, '')
  for _, s in ipairs(snippets) do
    local f = fence(s.text)
    table.insert(out, ('## %s:%d-%d'):format(s.path, s.start_line + 1, s.end_line + 1))
    table.insert(out, ('%s (score %.3f)'):format(s.reason or '', tonumber(s.score) or 0))
    table.insert(out, '')
    table.insert(out, f .. (FENCE_LANG[s.path:match('%.(%w+)$') or ''] or ''))
    vim.list_extend(out, vim.split(s.text:gsub('\n$', ''), '\n', { plain = true }))
    vim.list_extend(out, { f, '' })
  end
  if result.dropped and #result.dropped > 0 then
    vim.list_extend(out, { '## Dropped (over budget or filtered)', '' })
    for _, d in ipairs(result.dropped) do
      table.insert(out, '- ' .. dropped_line(d))
    end
  end
  return out
end

--- Lines of markdown for an explanation.
function M.explanation(text, where)
  local out = { '# Codeflow: explanation of ' .. where, '' }
  vim.list_extend(out, vim.split(vim.trim(text), '\n', { plain = true }))
  return out
end

--- Shows lines in a read-only scratch buffer named `codeflow://NAME`, in a split.
function M.show(name, lines)
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
  if vim.fn.bufwinid(bufnr) == -1 then
    local win = vim.api.nvim_get_current_win()
    vim.cmd('botright vsplit')
    vim.api.nvim_win_set_buf(0, bufnr)
    vim.api.nvim_set_current_win(win)
  end
  return bufnr
end

return M
