# The two commands of the README:
#   make demo   set up .venv and run the main job
#   make test   set up .venv and run the test suite
VENV ?= .venv
PY := $(VENV)/bin/python
# pytest-xdist workers for `make test` (one per core of the 2-core target machine; each test thread-limits torch)
TEST_WORKERS ?= 2
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo test lint scatter bench clean

venv:
	./scripts/setup_env.sh

demo: venv
	$(PY) -m glot_st.bench.demo

test: venv
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope

lint: venv
	$(PY) -m ruff check glot_st tests benchmarks scripts

scatter: venv
	./scripts/install_scatter.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
