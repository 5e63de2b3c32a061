# Entry points, all safe on a fresh machine:
#   make demo       set up .venv, fetch Fashion-MNIST from Debian if missing, then search, retrain, eval, export
#   make test       set up .venv, fetch Fashion-MNIST if missing, run the fast tests (about a minute)
#   make test-all   the same, then every test: end-to-end runs on real data, NNI experiments, subprocesses (CI)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# torch and torchvision are pinned together: other pairs do not load each other's ops
TORCH  := torch==2.14.1 torchvision==0.29.1
DEMO   := runs/demo
# CPU threads of the demo's commands: empty = ssnas's default (the CPUs this process may use; see README,
# "Threads on a shared machine"); e.g. `make demo THREADS=1` on a machine that other jobs keep busy
THREADS ?=
RUNFLAGS := $(if $(THREADS),--threads $(THREADS))

.PHONY: setup data demo test test-all clean

$(BIN)/ssnas: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e ".[test]" $(TORCH)
	touch $@

setup: $(BIN)/ssnas

# Fashion-MNIST's original idx files, from Debian (these machines reach no other data source)
data:
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq dataset-fashion-mnist; \
	fi

demo: setup data
	rm -rf $(DEMO)
	$(BIN)/ssnas search --dataset fashion-mnist --subset 1024 --layers 5 --init-channels 8 \
	    --batch-size 32 --epochs 2 --out $(DEMO)/search $(RUNFLAGS)
	$(BIN)/ssnas retrain --arch $(DEMO)/search --objective simclr --dataset fashion-mnist --subset 2000 \
	    --layers 5 --init-channels 8 --batch-size 64 --epochs 2 --warmup-epochs 1 --test-subset 1000 \
	    --out $(DEMO)/retrain $(RUNFLAGS)
	$(BIN)/ssnas eval $(DEMO)/retrain --protocol linear --test-subset 1000 $(RUNFLAGS)
	$(BIN)/ssnas eval $(DEMO)/retrain --protocol knn --test-subset 1000 $(RUNFLAGS)
	$(BIN)/ssnas export $(DEMO)/search --to png --out $(DEMO)/cells.png
	$(BIN)/ssnas export $(DEMO)/search --to nni --out $(DEMO)/arch_nni.json
	$(BIN)/ssnas export $(DEMO)/retrain --to onnx --out $(DEMO)/model.onnx
	$(BIN)/ssnas show $(DEMO)/retrain

test: setup data
	$(BIN)/python -m pytest -q -m "not slow"

test-all: setup data
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
