# actionlib: `make test` and `make reproduce` set everything up on a fresh clone.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= quick
# keep pip away from local wheel folders (a CPU-only torch there breaks torchvision)
PIP := PIP_FIND_LINKS= $(PY) -m pip

.PHONY: help install test test-fast reproduce notebooks profile lab clean

help:
	@echo "make test       create $(VENV) if needed, install actionlib[test], run the test suite"
	@echo "make reproduce  run the experiment notebooks (PROFILE=$(PROFILE): smoke|quick|paper) into results/"
	@echo "make notebooks  re-run the notebooks in place (smoke) to refresh the outputs nbval compares"
	@echo "make profile    parameters / GMACs / latency of every backbone x model"
	@echo "make lab        JupyterLab on notebooks/ with the project's kernel"

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name actionlib --display-name "actionlib (.venv)" >/dev/null
	touch $@

install: $(VENV)/.installed

NBVAL := --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg

test: $(VENV)/.installed
	$(PY) -m pytest -q tests
	$(PY) -m pytest -q $(NBVAL) notebooks/

profile: $(VENV)/.installed
	$(VENV)/bin/actionlib profile --arch tsn tsm action --backbone resnet50 mobilenetv2 bninception

reproduce: $(VENV)/.installed
	$(VENV)/bin/actionlib reproduce --profile $(PROFILE)

notebooks: $(VENV)/.installed
	$(VENV)/bin/actionlib reproduce --store

$(VENV)/.lab-installed: $(VENV)/.installed
	$(PIP) install --quiet -e '.[test,lab]'
	touch $@

lab: $(VENV)/.lab-installed
	$(VENV)/bin/jupyter lab --notebook-dir=notebooks

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
