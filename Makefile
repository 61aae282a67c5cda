# clicksam: two commands on a fresh machine.
#   make run    installs everything, builds the page and serves it on http://127.0.0.1:8000
#   make test   installs everything (incl. Chromium for the browser tests) and runs every check
# torch is installed first and alone as the CPU build (torch==2.13.0), so no range ever pulls CUDA.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
TORCH_SPEC ?= torch==2.13.0
PIP_EXTRA ?=
HOST ?= 127.0.0.1
PORT ?= 8000
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CHROMIUM ?= /usr/bin/chromium

.PHONY: run test install install-dev web web-check browser-deps lint typecheck pytest clean

run: install web
	$(VENV)/bin/clicksam serve --host $(HOST) --port $(PORT)

test: install-dev web browser-deps lint typecheck web-check pytest

$(VENV)/.stamp-torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip
	$(PIP) install $(PIP_EXTRA) "$(TORCH_SPEC)"
	touch $@

$(VENV)/.stamp-install: $(VENV)/.stamp-torch pyproject.toml
	$(PIP) install -e ".[server,export]"
	touch $@

# sam2==1.1.0 is the SAM 2.1 parity referee (tests only). Its sdist's setup imports torch and lists
# torchvision, which has no CPU build here: built against the installed torch without its deps (its
# runtime deps hydra-core and iopath are in the dev extra), so pip never touches torch; without build
# isolation the venv itself needs setuptools (Python >= 3.12 venvs come without it)
$(VENV)/.stamp-dev: $(VENV)/.stamp-install
	$(PIP) install -e ".[dev]"
	$(PIP) install "setuptools>=69"
	SAM2_BUILD_CUDA=0 $(PIP) install --no-deps --no-build-isolation "sam2==1.1.0"
	touch $@

install: $(VENV)/.stamp-install
install-dev: $(VENV)/.stamp-dev

web/node_modules/.package-lock.json: web/package-lock.json
	cd web && npm ci --no-audit --no-fund

web: web/node_modules/.package-lock.json
	cd web && npm run build

web-check: web/node_modules/.package-lock.json
	cd web && npm run check

browser-deps:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "installing Debian chromium for the browser tests"; \
	  $(SUDO) apt-get update && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium fonts-dejavu-core; \
	fi

lint:
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

typecheck:
	$(VENV)/bin/mypy

pytest:
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV) web/node_modules web/dist build *.egg-info
