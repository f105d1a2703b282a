-- The `:Codeflow` command exists as soon as the plugin is on the runtimepath; the server starts
-- only after `require("codeflow").setup{}`.
if vim.g.loaded_codeflow then
  return
end
vim.g.loaded_codeflow = true

vim.api.nvim_create_user_command('Codeflow', function(opts)
  require('codeflow.commands').run(opts)
end, {
  nargs = '?',
  complete = function(arglead)
    return require('codeflow.commands').complete(arglead)
  end,
  desc = 'Codeflow: status | context | explain | restart | toggle',
})
