--- Review of AI edits before they are applied (issue 11).
---
--- The plugin advertises `workspace.workspaceEdit.changeAnnotationSupport`, so the server marks
--- each AI edit with a change annotation that `needsConfirmation` (LSP 3.16). Neovim 0.11 applies
--- workspace edits without looking at annotations, both for a resolved code action and for
--- `workspace/applyEdit`; both go through `vim.lsp.util.apply_workspace_edit`, so that is where the
--- edit is held back: the diff is shown, `vim.ui.select` asks, and only "Apply" applies it.
local api = vim.api

local M = {}

--- The last reviewed edit: `{ label = string, diff = string[] }` (for tests and `:messages`).
M.last = nil

--- The label of the first annotation in `edit` that needs confirmation, else nil.
function M.confirmation_label(edit)
  for _, note in pairs(edit and edit.changeAnnotations or {}) do
    if note.needsConfirmation then
      return note.label or 'AI edit'
    end
  end
  return nil
end

--- The edit's text edits, as `{ uri, edits }` pairs (both `documentChanges` and `changes`).
local function text_edits(edit)
  local out = {}
  for _, change in ipairs(edit.documentChanges or {}) do
    if change.textDocument and change.edits then
      table.insert(out, { uri = change.textDocument.uri, edits = change.edits })
    end
  end
  for uri, edits in pairs(edit.changes or {}) do
    table.insert(out, { uri = uri, edits = edits })
  end
  return out
end

--- The unified diff of one document's edits, computed on a scratch copy of its buffer.
local function diff_lines(uri, edits, encoding)
  local bufnr = vim.uri_to_bufnr(uri)
  vim.fn.bufload(bufnr)
  local old = api.nvim_buf_get_lines(bufnr, 0, -1, false)
  local scratch = api.nvim_create_buf(false, true)
  api.nvim_buf_set_lines(scratch, 0, -1, false, old)
  vim.lsp.util.apply_text_edits(edits, scratch, encoding)
  local new = api.nvim_buf_get_lines(scratch, 0, -1, false)
  api.nvim_buf_delete(scratch, { force = true })
  local diff = (vim.text and vim.text.diff or vim.diff)(
    table.concat(old, '\n') .. '\n', table.concat(new, '\n') .. '\n', { result_type = 'unified', ctxlen = 2 })
  local name = vim.fn.fnamemodify(vim.uri_to_fname(uri), ':.')
  local lines = { '--- ' .. name, '+++ ' .. name }
  vim.list_extend(lines, vim.split(diff, '\n', { plain = true, trimempty = true }))
  return lines
end

--- Shows lines in a floating window over the editor; returns the window.
local function float(lines, title)
  local buf = api.nvim_create_buf(false, true)
  api.nvim_buf_set_lines(buf, 0, -1, false, lines)
  vim.bo[buf].filetype = 'diff'
  vim.bo[buf].modifiable = false
  vim.bo[buf].bufhidden = 'wipe'
  local width = 40
  for _, line in ipairs(lines) do
    width = math.max(width, #line)
  end
  width = math.min(width, vim.o.columns - 4)
  local height = math.min(#lines, math.max(vim.o.lines - 6, 3))
  return api.nvim_open_win(buf, false, {
    relative = 'editor', row = 1, col = 2, width = width, height = height,
    border = 'rounded', title = ' ' .. title .. ' ', style = 'minimal',
  })
end

--- Shows the diff of an edit that needs confirmation and applies it with `apply` only if the user
--- picks "Apply".
function M.review(edit, encoding, label, apply)
  local lines = {}
  for _, doc in ipairs(text_edits(edit)) do
    vim.list_extend(lines, diff_lines(doc.uri, doc.edits, encoding))
  end
  M.last = { label = label, diff = lines }
  local win = float(lines, label)
  vim.ui.select({ 'Apply', 'Cancel' }, { prompt = label .. ': apply this edit?' }, function(choice)
    pcall(api.nvim_win_close, win, true)
    if choice == 'Apply' then
      apply()
    else
      vim.notify('codeflow: ' .. label .. ' was not applied', vim.log.levels.INFO)
    end
  end)
end

--- Holds back edits that need confirmation, wherever Neovim applies a workspace edit. Idempotent.
function M.install()
  if M.original then
    return
  end
  local util = vim.lsp.util
  M.original = util.apply_workspace_edit
  util.apply_workspace_edit = function(edit, encoding, ...)
    local label = M.confirmation_label(edit)
    if not label then
      return M.original(edit, encoding, ...)
    end
    local rest = { ... }
    M.review(edit, encoding, label, function()
      M.original(edit, encoding, unpack(rest))
    end)
  end
end

return M
