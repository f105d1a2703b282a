--- Code actions see every client's diagnostics (issue 13).
---
--- Neovim 0.11's `vim.lsp.buf.code_action` sends each server only the diagnostics that server
--- published. Codeflow publishes none, it fixes what the other linters report, so "Fix with AI"
--- never appeared. The Codeflow client's `textDocument/codeAction` requests get the diagnostics of
--- all namespaces on the requested lines added to their context.
local api = vim.api

local M = {}

local METHOD = 'textDocument/codeAction'

local function same(a, b)
  return a.message == b.message and vim.deep_equal(a.range, b.range)
end

--- The LSP diagnostics of every namespace on lines `first`..`last` (0-based) of a buffer.
function M.on_lines(bufnr, first, last)
  local found = {}
  for lnum = first, last do
    vim.list_extend(found, vim.diagnostic.get(bufnr, { lnum = lnum }))
  end
  return vim.lsp.diagnostic.from(found)
end

--- The code action params with the other clients' diagnostics of its lines added.
function M.with_all(params, bufnr)
  if type(params) ~= 'table' or type(params.range) ~= 'table' or not api.nvim_buf_is_valid(bufnr or -1) then
    return params
  end
  params.context = params.context or { diagnostics = {} }
  local have = params.context.diagnostics or {}
  for _, d in ipairs(M.on_lines(bufnr, params.range.start.line, params.range['end'].line)) do
    if not vim.iter(have):any(function(h) return same(h, d) end) then
      table.insert(have, d)
    end
  end
  params.context.diagnostics = have
  return params
end

--- Adds the diagnostics to this client's code action requests. Idempotent.
function M.attach(client)
  if rawget(client, '_codeflow_request') then
    return
  end
  local request = client.request
  client._codeflow_request = request
  client.request = function(self, method, params, handler, bufnr)
    if method == METHOD then
      params = M.with_all(params, bufnr == 0 and api.nvim_get_current_buf() or bufnr)
    end
    return request(self, method, params, handler, bufnr)
  end
end

return M
