"""The house rules, read from fkd's own source: imports run one way, down the layers, and the kernel's
runner pulls in no plotting."""
import ast
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# core <- data <- model <- train <- submit/show/photo <- kaggle <- cli (bench and __main__ sit with cli)
LAYERS = {"core": 0, "data": 1, "model": 2, "train": 3, "submit": 4, "show": 4, "photo": 4, "tune": 5, "kaggle": 6,
          "cli": 7, "bench": 7, "__main__": 7, "__init__": 0}


def module_name(path: Path, root: Path = REPO) -> str:
    return ".".join(path.relative_to(root).with_suffix("").parts)


def layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else 0


def fkd_imports(path: Path):
    """(imported module, line, inside a function?) for every import of an fkd module in the file."""
    tree = ast.parse(path.read_text())
    functions = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
                 for n in ast.walk(f)}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "fkd":
            # `from fkd import x`: x is a module when fkd/x.py or fkd/x/ exists, else a name of fkd itself
            targets = [node.module] if node.module != "fkd" else [
                f"fkd.{a.name}" if a.name in LAYERS and a.name != "__init__" else "fkd" for a in node.names]
            for target in targets:
                yield target, node.lineno, id(node) in functions
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "fkd":
                    yield alias.name, node.lineno, id(node) in functions


def all_modules():
    return sorted(p for p in (REPO / "fkd").rglob("*.py") if "__pycache__" not in p.parts)


def test_every_module_sits_in_a_layer():
    for path in all_modules():
        assert module_name(path).split(".")[1] in LAYERS, f"{path}: in no layer of {sorted(LAYERS)}"


def upward_imports(paths, root=REPO) -> list:
    found = []
    for path in paths:
        me = module_name(path, root)
        for target, line, _ in fkd_imports(path):
            if target == "fkd":
                continue
            if layer(target) > layer(me) or (layer(target) == layer(me) == 4 and target.split(".")[1] != me.split(".")[1]):
                found.append(f"{path.relative_to(root)}:{line} imports {target}")
    return found


def test_no_import_runs_back_up_a_layer():
    upward = upward_imports(all_modules())
    assert not upward, "imports that run back up:\n" + "\n".join(upward)


def test_no_import_circle_even_through_functions():
    graph = {}
    for path in all_modules():
        graph[module_name(path)] = {t for t, _, _ in fkd_imports(path) if t in {module_name(p) for p in all_modules()}}
    seen, stack = set(), []

    def visit(node):
        if node in stack:
            raise AssertionError("import circle: " + " -> ".join(stack[stack.index(node):] + [node]))
        if node in seen:
            return
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            visit(nxt)
        stack.pop()
        seen.add(node)

    for node in sorted(graph):
        visit(node)


def test_the_kernel_runner_pulls_in_no_plotting_and_no_torch():
    code = ("import sys, fkd.kaggle.runner; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('matplotlib', 'skimage', 'torch') "
            "or m.startswith(('fkd.show', 'fkd.photo'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_checker_catches_an_upward_import(tmp_path):
    probe = tmp_path / "fkd" / "core" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("from fkd.train.loop import train_fold\n\n\ndef lazy():\n    from fkd.show import plots\n")
    assert upward_imports([probe], tmp_path) == ["fkd/core/probe.py:1 imports fkd.train.loop",
                                                 "fkd/core/probe.py:5 imports fkd.show"]


HEAVY = ("torch", "timm", "cv2", "sklearn", "numba", "scipy", "matplotlib")


def heavy_modules(argv, cwd) -> list:
    """The heavy third-party packages `fkd ARGV` imports, run as the command line runs it."""
    code = ("import sys; from fkd.cli import main\n"
            "try:\n    status = main(sys.argv[1:])\nexcept SystemExit as exit:\n    status = exit.code\n"
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))\n"
            "sys.exit(status)")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-c", code, *argv], cwd=cwd, capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    return eval(result.stdout.strip().splitlines()[-1])


def test_light_commands_import_no_model_library(competition, tmp_path):
    out = tmp_path / "subs"
    mean = ["submit", "--data-dir", str(competition), "--model", "mean", "--out-dir", str(out)]
    heavy_modules(mean, tmp_path)                                     # the first run may parse and cache
    assert heavy_modules(mean, tmp_path) == []                        # a cached mean submission: nothing heavy
    [first, *_] = sorted(out.glob("*.csv"))
    lookup = str(competition / "IdLookupTable.csv")
    assert heavy_modules(["check-submission", str(first), "--lookup", lookup], tmp_path) == []
    assert heavy_modules(["config"], tmp_path) == []
    assert heavy_modules(["--help"], tmp_path) == []
    assert heavy_modules(["submit", "--help"], tmp_path) == []
