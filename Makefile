# Every target creates/refreshes .venv first; the stamp makes that a no-op when
# requirements.txt has not changed since the last install.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv test demo bench golden clean

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

test: venv
	$(PY) -m pytest -q tests

golden: venv
	$(PY) ../shared/golden/check_golden.py

demo: venv
	$(PY) train.py --problem digits --logdir demo_out --n_levels 3 --depth 6 --width 48 \
	  --flow_coupling 1 --n_bits_x 5 --ycond --learntop --anchor_size 16 --n_batch_train 64 \
	  --n_train 1536 --lr 0.002 --epochs_warmup 1 --epochs_full_valid 10 --epochs_full_sample 10 \
	  --gradient_checkpointing 0 --nojit_compile --steps_per_execution 8 --max_time 150

# Benchmarks (programs, not tests): glow_tf vs tfp.bijectors.Glow and the memory-saving mode;
# each writes its section of benchmarks/results.json, then the plot benchmarks/throughput.png.
bench: venv
	$(PY) benchmarks/bench_train.py
	$(PY) benchmarks/bench_sample.py
	$(PY) benchmarks/bench_memory.py
	$(PY) benchmarks/plot.py

clean:
	rm -rf $(VENV) demo_out
