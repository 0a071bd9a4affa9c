# MesoCare — `make run` and `make test` do all the set-up on a fresh machine.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON310 ?= $(shell for p in "$$PYTHON" $$HOME/.pyenv/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do \
	[ -n "$$p" ] && [ -x "$$p" ] && "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && echo "$$p" && break; done)
VENV := .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
RASA := $(BIN)/rasa
SPACY_MODEL := build/spacy/mesocare_en
STAMP_VENV := $(VENV)/.stamp-requirements
STAMP_NPM := web/node_modules/.stamp-npm
STAMP_MODEL := models/.stamp-trained
TRAIN_INPUTS := config.yml domain.yml $(wildcard data/*.yml) $(wildcard data/safety/*.yml) $(wildcard mesocare/safety/*.py)
export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 3
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
# No telemetry from Rasa (no third-party request at any time).
export RASA_TELEMETRY_ENABLED := false

.PHONY: help setup venv spacy npm browser train run shell validate test test-unit crossval eval-nlu eval-safety bench lint lock clean db

help:
	@echo "make run    - set up everything, train if needed, start bot (5005), actions (5055), staff (8000), site (8080)"
	@echo "make test   - set up everything, then run the whole test suite"
	@echo "make shell | train | validate | crossval | eval-nlu | eval-safety | bench | lint | lock"

# ---------- set-up ----------
$(STAMP_VENV): requirements.txt pyproject.toml
	@test -n "$(PYTHON310)" || { echo "Python 3.10 not found (set PYTHON=/path/to/python3.10)"; exit 1; }
	@test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade "pip==23.2.1" "setuptools==68.2.2" "wheel==0.41.2"
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@

venv: $(STAMP_VENV)

$(SPACY_MODEL)/meta.json: $(STAMP_VENV) $(wildcard data/safety/*.yml) $(wildcard mesocare/safety/*.py)
	$(PY) -m mesocare.safety.build_pipeline --out $(SPACY_MODEL)

spacy: $(SPACY_MODEL)/meta.json

$(STAMP_NPM): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

npm: $(STAMP_NPM)

browser:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

db: $(STAMP_VENV)
	@mkdir -p var
	$(BIN)/mesocare db upgrade

setup: venv spacy npm browser db

$(STAMP_MODEL): $(STAMP_VENV) $(SPACY_MODEL)/meta.json $(TRAIN_INPUTS)
	$(RASA) train --fixed-model-name mesocare --out models
	touch $@

train: setup $(STAMP_MODEL)

# ---------- run ----------
run: setup $(STAMP_MODEL)
	$(PY) -m mesocare.runner

shell: setup $(STAMP_MODEL)
	$(RASA) shell --model models/mesocare.tar.gz --endpoints endpoints.yml

# ---------- quality ----------
validate: venv
	$(PY) -m mesocare.validate

lint: venv
	$(BIN)/ruff check .

test: setup $(STAMP_MODEL)
	$(MAKE) validate
	$(BIN)/ruff check .
	mkdir -p test-output
	$(BIN)/pytest -q -p no:cacheprovider --junitxml=test-output/junit.xml
	$(MAKE) eval-safety
	$(MAKE) test-stories
	$(MAKE) eval-nlu

test-unit: setup
	$(BIN)/pytest -q -m "not live and not browser"

test-stories: $(STAMP_MODEL)
	$(RASA) test core --model models/mesocare.tar.gz --stories tests/test_stories.yml \
		--fail-on-prediction-errors --out results/core
	$(RASA) test core --model models/mesocare.tar.gz --stories tests/test_stories_safety.yml \
		--fail-on-prediction-errors --out results/core-safety

eval-nlu: $(STAMP_MODEL)
	$(PY) -m mesocare.eval_nlu --model models/mesocare.tar.gz --data tests/nlu_holdout.yml --min-f1 0.90

# triage_cases.yml is the development set; the blind sets were each measured once before any rule was
# changed for them (figures in the README) and are regression gates since.
SAFETY_SETS := triage_cases triage_cases_blind triage_cases_blind2 triage_cases_blind3 triage_cases_blind4
eval-safety: spacy
	@for set in $(SAFETY_SETS); do \
		echo "== tests/$$set.yml"; \
		$(PY) -m mesocare.safety.evaluate --cases tests/$$set.yml --out results/safety_$$set.json \
			--min-urgent-recall 0.95 || exit 1; \
	done

crossval: setup
	$(RASA) test nlu --nlu data/nlu.yml --cross-validation --folds 5 --out results/crossval

bench: setup $(STAMP_MODEL)
	$(PY) scripts/bench.py

lock:
	rm -rf /tmp/mesocare-lock && $(PYTHON310) -m venv /tmp/mesocare-lock
	/tmp/mesocare-lock/bin/pip install -q -r requirements.in
	/tmp/mesocare-lock/bin/pip check
	( head -2 requirements.txt; /tmp/mesocare-lock/bin/pip freeze ) > requirements.txt.new && mv requirements.txt.new requirements.txt

clean:
	rm -rf $(VENV) build models results test-output web/node_modules
