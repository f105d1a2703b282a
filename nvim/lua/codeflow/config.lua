--- Options of the Codeflow plugin and how the server command is found.
local M = {}

---@class codeflow.Keymaps
---@field accept string|false Accept the whole ghost text.
---@field accept_word string|false Accept the next word.
---@field accept_line string|false Accept the rest of the line.
---@field dismiss string|false Hide the ghost text.
---@field trigger string|false Ask for a completion now (an "invoked" request, longer output).

---@class codeflow.Options
M.defaults = {
  --- The server command; nil finds `.venv/bin/codeflow` or `venv/bin/codeflow` under the working
  --- directory, else `codeflow` on PATH.
  ---@type string[]|nil
  cmd = nil,
  --- Arguments after `serve`, such as { "--log-file", "/tmp/codeflow.log" }.
  cmd_args = {},
  filetypes = {
    'python', 'javascript', 'javascriptreact', 'typescript', 'typescriptreact',
    'go', 'rust', 'java', 'c', 'cpp', 'lua', 'sh',
  },
  root_markers = { 'codeflow.toml', 'pyproject.toml', 'setup.py', 'package.json', 'go.mod', 'Cargo.toml', '.git' },
  --- Server settings, the `codeflow` object in camelCase, e.g. { model = { path = "..." } }.
  settings = {},
  --- Show the diff of an AI edit (code actions) and ask before applying it.
  review_edits = true,
  ghost = {
    enabled = true,
    --- nil uses settings.completion.debounceMs, else 75.
    debounce_ms = nil,
    --- Use `vim.lsp.inline_completion` where Neovim has it (0.12+).
    native = true,
    hl_group = 'CodeflowGhost',
  },
  ---@type codeflow.Keymaps
  keymaps = {
    accept = '<Tab>',
    accept_word = '<M-w>',
    accept_line = '<M-l>',
    dismiss = '<C-]>',
    trigger = '<M-\\>',
  },
}

---@type codeflow.Options
M.options = vim.deepcopy(M.defaults)

--- Merges user options over the defaults.
function M.set(opts)
  M.options = vim.tbl_deep_extend('force', vim.deepcopy(M.defaults), opts or {})
  return M.options
end

--- The workspace virtualenv's `codeflow`, else `codeflow` on PATH, else nil.
function M.find_executable(dir)
  dir = dir or vim.fn.getcwd()
  local bin = vim.fn.has('win32') == 1 and { 'Scripts', 'codeflow.exe' } or { 'bin', 'codeflow' }
  for _, venv in ipairs({ '.venv', 'venv' }) do
    local path = vim.fs.joinpath(dir, venv, bin[1], bin[2])
    if vim.fn.executable(path) == 1 then
      return path
    end
  end
  local found = vim.fn.exepath('codeflow')
  return found ~= '' and found or nil
end

--- The full command: `<codeflow> serve [cmd_args]`.
function M.command()
  local o = M.options
  if o.cmd then
    return vim.list_extend(vim.deepcopy(o.cmd), o.cmd_args)
  end
  local exe = M.find_executable() or 'codeflow'
  return vim.list_extend({ exe, 'serve' }, o.cmd_args)
end

--- The debounce in milliseconds.
function M.debounce_ms()
  local o = M.options
  if o.ghost.debounce_ms then
    return o.ghost.debounce_ms
  end
  local completion = o.settings.completion or {}
  return completion.debounceMs or 75
end

return M
