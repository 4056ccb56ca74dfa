"""The shape of the package: which module may import which, and what importing glow_tf does.

glow_tf's modules form layers; a module imports its own layer and those below, never one
above (deferred imports inside functions count too), and the imports form no cycle:

    foundation (errors, files, fields, heap, latents, optim, progress, data)
      <- layers <- model (config, model, fit, bijectors) <- checkpoints / openai / export
      <- sampling / training <- cli

Command-line code (absl flags, ``main``s) lives only in glow_tf/cli.
"""
import ast
import json
import os
import subprocess
import sys
import textwrap

from conftest import REPO_ROOT

PACKAGE = os.path.join(REPO_ROOT, "glow_tf")
FOUNDATION, LAYERS, MODEL, STORAGE, USES, CLI = range(6)
# Each module's layer, by the longest name that starts it.
RANKS = {
    "glow_tf.errors": FOUNDATION, "glow_tf.files": FOUNDATION, "glow_tf.fields": FOUNDATION,
    "glow_tf.heap": FOUNDATION, "glow_tf.latents": FOUNDATION, "glow_tf.optim": FOUNDATION,
    "glow_tf.data": FOUNDATION, "glow_tf.progress": FOUNDATION,
    "glow_tf.layers": LAYERS,
    "glow_tf": MODEL, "glow_tf.config": MODEL, "glow_tf.model": MODEL, "glow_tf.fit": MODEL, "glow_tf.bijectors": MODEL,
    "glow_tf.checkpoints": STORAGE, "glow_tf.openai": STORAGE, "glow_tf.export": STORAGE,
    "glow_tf.sampling": USES, "glow_tf.inference": USES, "glow_tf.train_config": USES, "glow_tf.plan": USES,
    "glow_tf.seeds": USES, "glow_tf.cluster": USES, "glow_tf.preemption": USES, "glow_tf.train_logs": USES,
    "glow_tf.train_state": USES, "glow_tf.trainer": USES, "glow_tf.train_lib": USES,
    "glow_tf.demo": USES,
    "glow_tf.cli": CLI,
    "glow_tf.demo.__main__": CLI,  # python -m glow_tf.demo: a program, it calls cli.demo's main
}
LAYER_NAMES = ["foundation", "layers", "model", "checkpoints/openai/export", "sampling/training", "cli"]


def _modules():
    """{module name: path} of every .py file of the package."""
    found = {}
    for root, _, names in os.walk(PACKAGE):
        for name in names:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                parts = os.path.relpath(path, REPO_ROOT)[:-len(".py")].split(os.sep)
                found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path, modules):
    """The modules a file imports anywhere in it (functions too): glow_tf's by module name, and others."""
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            # `from package import name`: the submodule `name` where there is one.
            names += [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                      for alias in node.names]
    return set(names)


def _rank(module):
    owner = max((name for name in RANKS if module == name or module.startswith(name + ".")), key=len, default=None)
    return RANKS.get(owner)


def _graph():
    """{module: set of glow_tf modules it imports}, a module's import of a package counting as one of
    the package's __init__ when the importer is outside that package."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        edges = set()
        for name in _imports(path, modules):
            if name.split(".")[0] != "glow_tf":
                continue
            parts = name.split(".")
            for k in range(2, len(parts)):  # a submodule's import runs its packages' __init__ first
                package = ".".join(parts[:k])
                if not (module == package or module.startswith(package + ".")):
                    edges.add(package)
            edges.add(name)
        graph[module] = edges - {module}
    return graph


def test_every_module_has_a_layer():
    assert [module for module in _modules() if _rank(module) is None] == []


def test_no_module_imports_one_of_a_higher_layer():
    upward = sorted(f"{module} ({LAYER_NAMES[_rank(module)]}) imports {name} ({LAYER_NAMES[_rank(name)]})"
                    for module, names in _graph().items() for name in names
                    if _rank(module) is not None and _rank(name) is not None and _rank(name) > _rank(module))
    assert upward == []


def test_only_the_cli_parses_command_lines():
    modules = _modules()
    offending = sorted(f"{module} imports {name}" for module, path in modules.items()
                       if _rank(module) != CLI
                       for name in _imports(path, modules)
                       if name == "absl.flags" or name == "glow_tf.cli" or name.startswith("glow_tf.cli."))
    offending += sorted(f"{module} imports absl.flags" for module, path in modules.items() if _rank(module) != CLI
                        and "from absl import flags" in open(path, encoding="utf-8").read())
    assert offending == []


def test_imports_form_no_cycle():
    graph = _graph()
    state, cycles = {}, []

    def visit(module, path):
        state[module] = "open"
        for name in sorted(graph.get(module, ())):
            if state.get(name) == "open":
                cycles.append(" -> ".join(path[path.index(name):] + [name]) if name in path else name)
            elif name in graph and name not in state:
                visit(name, path + [name])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


# Imports glow_tf and the modules a user reaches for, in a process of its own, and reports what
# changed: TensorFlow's environment variables, and whether stderr (fd 2) was redirected.
IMPORT_CHECK = textwrap.dedent("""
    import json, os, sys
    redirected = []
    real_dup2 = os.dup2
    os.dup2 = lambda fd, fd2, *args: (redirected.append(fd2) if fd2 == 2 else None) or real_dup2(fd, fd2, *args)
    before = {key: os.environ.get(key) for key in ("TF_CPP_MIN_LOG_LEVEL", "XLA_FLAGS", "TF_USE_LEGACY_KERAS")}
    stderr = sys.stderr
    import glow_tf
    from glow_tf import Glow, GlowConfig
    import glow_tf.checkpoints, glow_tf.export, glow_tf.sampling, glow_tf.train_lib
    after = {key: os.environ.get(key) for key in before}
    print(json.dumps({"before": before, "after": after, "stderr_redirected": redirected,
                      "sys_stderr_replaced": sys.stderr is not stderr}))
""")


def test_importing_glow_tf_leaves_the_process_alone():
    env = {key: value for key, value in os.environ.items()
           if key not in ("TF_CPP_MIN_LOG_LEVEL", "XLA_FLAGS", "TF_USE_LEGACY_KERAS")}
    env["PYTHONPATH"] = REPO_ROOT
    result = subprocess.run([sys.executable, "-c", IMPORT_CHECK], env=env, cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["after"] == report["before"] == {"TF_CPP_MIN_LOG_LEVEL": None, "XLA_FLAGS": None,
                                                   "TF_USE_LEGACY_KERAS": None}
    assert report["stderr_redirected"] == [] and not report["sys_stderr_replaced"]
