# Every target creates/refreshes .venv first; the stamp makes that a no-op when neither
# requirements.txt nor pyproject.toml has changed since the last install. The venv holds the
# pinned requirements and this project in editable mode (glow_tf importable, glow-train,
# glow-sample and glow-export on .venv/bin). glow_tf's programs set the environment TensorFlow
# reads (TF_USE_LEGACY_KERAS, TF_CPP_MIN_LOG_LEVEL, XLA_FLAGS) themselves: glow_tf/cli/console.py.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: venv test mpi chromium demo bench ablation golden clean

venv: $(VENV)/.stamp

$(VENV)/.stamp: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Two pytest-xdist workers (this project's machines have 2 cores; much of a test is tracing and
# compiling, single-threaded); a file's tests stay on one worker, and so do the three files that
# share the one_process_run fixture (loadgroup; tests/conftest.py).
test: venv mpi chromium
	$(PY) -m pytest -q -rs -n 2 --dist loadgroup --durations=15 tests

# Open MPI's mpiexec for tests/test_mpi_launch.py (the original's `mpiexec -n N python train.py`):
# installed with apt-get when it is missing and this is root on a Debian-like system; otherwise
# that test is skipped and -rs prints why. Never fails the target.
mpi:
	@command -v mpiexec >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -qq --no-install-recommends openmpi-bin >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && \
	      apt-get install -y -qq --no-install-recommends openmpi-bin >/dev/null 2>&1; }; }; }; \
	command -v mpiexec >/dev/null 2>&1 || echo "mpiexec unavailable: tests/test_mpi_launch.py will be skipped"

# Debian's Chromium and its WebDriver for tests/test_demo_browser.py (the web demo in a real browser),
# as Open MPI above: installed with apt-get when missing and this is root on a Debian-like system;
# otherwise that test is skipped and -rs prints why. Never fails the target.
CHROMIUM_FOUND = command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1
chromium:
	@{ $(CHROMIUM_FOUND); } || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  { apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1 || \
	    { apt-get update -qq >/dev/null 2>&1 && \
	      apt-get install -y -qq --no-install-recommends chromium chromium-driver >/dev/null 2>&1; }; }; }; \
	{ $(CHROMIUM_FOUND); } || echo "chromium or chromedriver unavailable: tests/test_demo_browser.py will be skipped"

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
	$(PY) -m benchmarks.bench_train
	$(PY) -m benchmarks.bench_sample
	$(PY) -m benchmarks.bench_memory
	$(PY) -m benchmarks.bench_scale
	$(PY) -m benchmarks.bench_celeba
	$(PY) -m benchmarks.plot

# The paper's ablation (Figure 3): permutation x coupling x 3 seeds on MNIST, about 70-85 minutes
# on 2 cores; writes benchmarks/ablation.json and .png. Runs resume and finished ones are skipped.
ablation: venv
	$(PY) -m benchmarks.ablation

clean:
	rm -rf $(VENV) demo_out *.egg-info
