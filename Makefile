# Two commands do all the set-up on a fresh machine (see README.md):
#   make book   install what is needed, build the website into _build/html
#   make test   install what is needed, run every test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
# nbgrader calls `alembic` from PATH when it creates a gradebook; jupyter-book and
# nbgrader start kernels from this environment.
export PATH := $(BIN):$(PATH)
export TF_CPP_MIN_LOG_LEVEL := 3
export TF_ENABLE_ONEDNN_OPTS := 0

.PHONY: book test test-fast test-browser exercises install clean lab

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $@

install: $(VENV)/.installed

book: install
	$(BIN)/jupyter-book build . -n -W --keep-going
	@echo "Open the course: file://$(CURDIR)/_build/html/index.html"

test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

# The book, then the website in headless Chromium (Debian's `chromium`; skipped when missing,
# unless COURSE_REQUIRE_BROWSER=1). Screenshots go to _build/screenshots/.
test-browser: install
	$(BIN)/python -m pytest tests/test_browser.py

# JupyterLab on the student notebooks, with nbgrader's Validate button: its server extension
# reads nbgrader_config.py from the server's working directory, this folder.
# Pass more options with LAB_ARGS, e.g. make lab LAB_ARGS="--no-browser --port 8890".
lab: install
	$(BIN)/jupyter lab --ServerApp.root_dir=exercises $(LAB_ARGS)

# Regenerate the student notebooks in exercises/ from solutions/ (never edit them by hand).
exercises: install
	$(BIN)/python -m rnncourse.release

clean:
	rm -rf _build gradebook.db submitted autograded feedback
