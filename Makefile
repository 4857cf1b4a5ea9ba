# The course's two everyday commands:
#   make book   set up everything, execute the notebooks, build the HTML book (an output
#               that drifts beyond its tolerance is reported, not fatal: README, nbval)
#   make test   set up everything, lint, run the whole test suite (what CI runs)
#   make pdf    the book as one PDF, _build/pdf/anomaly-edu.pdf (builds the book first;
#               prints each page with headless Chromium: scripts/build_pdf.py)
#   make lint   ruff: lint and format check of the code and the notebooks
# Both create a virtual environment in .venv with the pinned versions of
# requirements-ci.txt the first time; later runs reuse it.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
TORCHATTACKS := torchattacks==3.5.1

.PHONY: book pdf test lint format student setup npm browser clean

book: setup npm
	$(PY) scripts/build_course.py book

# Prints the number of pages and the size of the PDF.
pdf: book browser
	$(PY) scripts/build_pdf.py

test: setup npm browser lint
	$(PY) -m pytest

# What ruff reads: the package, scripts, tests, benchmarks and the notebooks.
LINTED := anomaly_edu scripts tests benchmarks lectures exercises

lint: setup
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

# Rewrites the files in ruff's format (make lint then passes).
format: setup
	$(VENV)/bin/ruff format $(LINTED)
	$(VENV)/bin/ruff check --fix $(LINTED)

student: setup
	$(PY) scripts/make_student_versions.py

setup: $(VENV)/.installed

$(VENV)/.installed: requirements-ci.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-ci.txt
	$(PY) -m pip install --quiet --no-deps $(TORCHATTACKS)
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

# $(call need,COMMAND,DEBIAN_PACKAGE,WHY): install the package with apt-get (as
# root) when COMMAND is missing, or say what to install.
define need
	@command -v $(1) >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2) >/dev/null; \
	  else \
	    echo "$(3): install Debian's '$(2)' package (sudo apt-get install $(2))."; exit 1; \
	  fi; }
endef

# The book's offline assets (MathJax, require.js, the widget manager) come from npm.
npm:
	$(call need,npm,npm,The book fetches its offline assets with npm)

# The book's test opens pages in headless Chromium, and `make pdf` prints them with it.
browser:
	$(call need,chromium,chromium,The book's test and the PDF need Chromium)

clean:
	rm -rf _build book/_offline_assets
