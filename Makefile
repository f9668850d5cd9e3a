# The two set-up commands (README): `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test sandbox lint typecheck bench-sandbox clean chromium postgresql nodejs joiner joiner-check

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed joiner
	$(PY) -m bot run

sandbox: $(VENV)/.installed
	$(PY) -m bot sandbox

test: $(VENV)/.installed chromium postgresql joiner joiner-check
	$(PY) -m pytest -q

# Page tests drive Debian's Chromium through Playwright (no browser download). Installed when missing and
# possible (root with apt); otherwise those tests are skipped with a reason.
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium is not installed: page tests will be skipped"

# The store's tests run on a real PostgreSQL 15 too (tests/support/postgres.py starts a throwaway cluster on a free
# loopback port; as the package's postgres user when run as root). Installed when missing and possible (root with
# apt); otherwise those tests are skipped with a reason. (The cluster the package itself starts is not used.)
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; } || \
		echo "postgresql is not installed: the PostgreSQL store tests will be skipped"

# The browser connector's page runs Microsoft's Calling SDK (@azure/communication-calling, pinned in
# joiner/package-lock.json), bundled into one ES module by esbuild. Node.js and npm only build and type-check it;
# nothing is fetched at run time. npm ci runs no install scripts: esbuild's binary comes as an npm optional
# dependency, and its postinstall only checks it. (npm warns that @azure/communication-common wants Node 22: the
# package runs in the browser here, never in Node.)
JOINER_STAMP := joiner/node_modules/.installed
SDK_BUNDLE := bot/calls/browser/static/sdk/calling.js

nodejs:
	@{ command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; } || \
	{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; } || \
	{ echo "node and npm are needed to build the Calling SDK bundle: apt-get install nodejs npm (as root)"; exit 1; }

$(JOINER_STAMP): joiner/package.json joiner/package-lock.json | nodejs
	cd joiner && npm ci --ignore-scripts --no-audit --no-fund
	touch $@

$(SDK_BUNDLE): $(JOINER_STAMP) joiner/sdk-entry.js
	@mkdir -p $(dir $@)
	joiner/node_modules/.bin/esbuild joiner/sdk-entry.js --bundle --format=esm --platform=browser \
		--log-level=warning --outfile=$@

joiner: $(SDK_BUNDLE)

# The joiner page and the sandbox's stand-in SDK against the real SDK's types (joiner/sdk-types.ts says how).
joiner-check: $(JOINER_STAMP)
	joiner/node_modules/.bin/tsc --noEmit -p joiner/tsconfig.json

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check bot tests bench
	$(VENV)/bin/ruff format --check bot tests bench

# mypy, strict, over bot, tests and bench ([tool.mypy] in pyproject.toml names them).
typecheck: $(VENV)/.installed
	$(VENV)/bin/mypy

bench-sandbox: $(VENV)/.installed
	$(PY) -m bench.sandbox_capacity

# The benchmark suite (README "Performance"): every scenario against the sandbox, each bridge and sandbox in their
# own process; writes bench-results.json and prints the table. bench-quick: smaller sizes, under 3 minutes.
.PHONY: bench bench-quick
bench: $(VENV)/.installed postgresql
	$(PY) -m bench.suite $(BENCH_ARGS)

bench-quick: $(VENV)/.installed postgresql
	$(PY) -m bench.suite --quick $(BENCH_ARGS)

# The crash and fault soak (README "Reliability"): 1,000 messages and 5 SIGKILLs, under 5 minutes on two cores.
# The full run (10,000 messages, 20 kills): make soak SOAK_ARGS=--full
# Every call leg in the bridge's headless Chromium, killed with it: make soak SOAK_ARGS="--connector browser"
.PHONY: soak
soak: $(VENV)/.installed chromium
	$(PY) -m bench.soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache joiner/node_modules $(SDK_BUNDLE)
