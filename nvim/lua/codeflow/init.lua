--- Codeflow for Neovim 0.11+: the language server through `vim.lsp.config`, plus ghost text.
local config = require('codeflow.config')

local M = {}

M.did_setup = false

--- The client capabilities: Neovim's, plus inline completion (LSP 3.18), plus change annotations
--- when AI edits are reviewed (the server then marks them as needing confirmation).
local function capabilities()
  local caps = vim.lsp.protocol.make_client_capabilities()
  caps.textDocument.inlineCompletion = caps.textDocument.inlineCompletion or { dynamicRegistration = false }
  if config.options.review_edits then
    caps.workspace.workspaceEdit = caps.workspace.workspaceEdit or {}
    caps.workspace.workspaceEdit.changeAnnotationSupport = { groupsOnLabel = false }
  end
  return caps
end

--- The workspace root: the nearest marker, else the working directory when the file is under
--- it, else the file's folder. The server indexes this folder for cross-file context, so it
--- must not be nil (Neovim sends no workspace folders then).
local function root_dir(bufnr, on_dir)
  local root = vim.fs.root(bufnr, config.options.root_markers)
  if not root then
    local file = vim.api.nvim_buf_get_name(bufnr)
    local cwd = vim.fn.getcwd()
    root = vim.startswith(file, cwd .. '/') and cwd or vim.fs.dirname(file)
  end
  on_dir(root)
end

--- The settings as they go to the server: `{ codeflow = ... }`, the root and each section an
--- object. vim.json encodes an empty Lua table as `[]`, and the server read `"codeflow": []` as an
--- unknown key on every start (issue 13). Empty tables inside a section are list settings
--- (`context.exclude`) and stay lists.
function M.wire_settings(settings)
  local out = vim.empty_dict()
  for key, value in pairs(settings or {}) do
    out[key] = (type(value) == 'table' and vim.tbl_isempty(value)) and vim.empty_dict() or value
  end
  return { codeflow = out }
end

--- The `vim.lsp.config` entry for the server.
function M.lsp_config()
  local o = config.options
  local settings = M.wire_settings(o.settings)
  local status = require('codeflow.status')
  return {
    cmd = config.command(),
    filetypes = o.filetypes,
    root_dir = root_dir,
    init_options = settings,
    settings = settings,
    capabilities = capabilities(),
    handlers = { ['codeflow/status'] = status.on_status, ['window/showMessage'] = status.on_message },
  }
end

--- The ghost's colour: Comment's, plus a terminal colour, which 0.11's default `Comment` lacks
--- (it has only `guifg`, so 256-colour terminals drew the ghost like code).
local function ghost_highlight()
  local comment = vim.api.nvim_get_hl(0, { name = 'Comment', link = false })
  vim.api.nvim_set_hl(0, config.options.ghost.hl_group, {
    fg = comment.fg or 0x808080, ctermfg = comment.ctermfg or 244, italic = comment.italic, default = true,
  })
end

local function on_attach(args)
  local client = vim.lsp.get_client_by_id(args.data.client_id)
  if client and client.name == 'codeflow' then
    require('codeflow.diagnostics').attach(client)
    require('codeflow.ghost').attach(args.buf, client)
  end
end

local function on_detach(args)
  local client = vim.lsp.get_client_by_id(args.data.client_id)
  if client and client.name == 'codeflow' then
    require('codeflow.ghost').detach(args.buf)
  end
end

--- Registers and enables the server, and sets up ghost text for the buffers it attaches to.
---@param opts? table see `codeflow.config.defaults`
function M.setup(opts)
  config.set(opts)
  if config.options.review_edits then
    require('codeflow.review').install()
  end
  vim.lsp.config('codeflow', M.lsp_config())
  local group = vim.api.nvim_create_augroup('codeflow', { clear = true })
  ghost_highlight()
  -- `:colorscheme` clears highlight groups.
  vim.api.nvim_create_autocmd('ColorScheme', { group = group, callback = ghost_highlight })
  vim.api.nvim_create_autocmd('LspAttach', { group = group, callback = on_attach })
  vim.api.nvim_create_autocmd('LspDetach', { group = group, callback = on_detach })
  vim.api.nvim_create_autocmd('LspProgress', { group = group, callback = require('codeflow.status').on_progress })
  vim.lsp.enable('codeflow')
  M.did_setup = true
end

M.statusline = function()
  return require('codeflow.status').statusline()
end

return M
