# The two set-up commands of the README: `make demo` (main job on the built-in dataset: generate, pack, verify,
# bench, train yolov5n briefly and print its mAP) and `make test`.
# Both create .venv with everything fastload needs, on a machine that has only Python 3.10+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO ?= runs/demo

.PHONY: install demo test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

demo: $(STAMP)
	$(BIN)/fastload demo $(DEMO)
	$(BIN)/fastload train

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check fastload yolo tests benchmarks tools
	$(BIN)/ruff format --check fastload yolo tests benchmarks tools

clean:
	rm -rf $(VENV) runs .pytest_cache
