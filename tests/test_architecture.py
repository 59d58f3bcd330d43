"""The import contract ARCHITECTURE.md states, checked on the source: layers import downwards
only, no module imports another module's private name, SQL stays in the two stores, and an
import inside a function is one of the heavy or optional imports ARCHITECTURE.md lists."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "talkbench"

# lowest first; a module may import its own layer and the ones before it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("foundations", ("talkbench.util", "talkbench.errors", "talkbench.clip", "talkbench.media",
                     "talkbench.face", "talkbench.weights")),
    ("metrics", ("talkbench.metrics", "talkbench.protocol")),
    ("datasets", ("talkbench.datasets", "talkbench.samples")),
    ("vqtalker", ("talkbench.vqtalker",)),
    ("baselines", ("talkbench.baselines",)),
    ("leaderboard", ("talkbench.leaderboard",)),
    ("cli", ("talkbench.cli", "talkbench.__main__")),
]
# the only modules that talk SQL to a database
STORES = {"talkbench.leaderboard.store", "talkbench.datasets.catalog", "talkbench.datasets.audit.lid_cache"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int | None:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return rank
    return None


def modules() -> list[tuple[str, Path, ast.Module]]:
    return [(module_name(p), p, ast.parse(p.read_text(encoding="utf-8"), str(p)))
            for p in sorted(SRC.rglob("*.py"))]


def type_checking_only(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def imports(tree: ast.Module, module: str, path: Path):
    """(imported module, names, line, inside a function) for every import of the file that
    runs (not those under ``if TYPE_CHECKING:``). ``from talkbench import media`` counts as an
    import of ``talkbench.media``."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    inside: set[int] = set()
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            inside.update(id(n) for n in ast.walk(node) if n is not node)
        if type_checking_only(node):
            skipped.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, [], node.lineno, id(node) in inside
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            names = [a.name for a in node.names]
            if base == "talkbench":
                for name in names:
                    yield f"talkbench.{name}", [], node.lineno, id(node) in inside
            else:
                yield base, names, node.lineno, id(node) in inside


def heavy_imports() -> set[str]:
    """The third-party module names listed under 'Heavy imports' in ARCHITECTURE.md."""
    text = (ROOT / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text.split("## Heavy imports", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"`([A-Za-z_][\w.]*)`", section))


def listed(target: str, names: set[str]) -> bool:
    return any(target == n or target.startswith(n + ".") for n in names)


def heavy_talkbench_modules(all_modules, heavy: set[str]) -> set[str]:
    """talkbench modules whose import loads a heavy module: directly at module top, or through
    another talkbench module imported at module top."""
    known = {m for m, _, _ in all_modules}
    edges: dict[str, set[str]] = {}
    heavy_now: set[str] = set()
    for module, path, tree in all_modules:
        edges[module] = set()
        for target, names, _, inside in imports(tree, module, path):
            if inside:
                continue
            if listed(target, heavy):
                heavy_now.add(module)
            if target in known:
                edges[module].add(target)
                edges[module] |= {f"{target}.{n}" for n in names if f"{target}.{n}" in known}
            parts = target.split(".")  # importing a.b.c runs a and a.b first
            edges[module] |= {".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in known}
    changed = True
    while changed:
        changed = False
        for module, targets in edges.items():
            if module not in heavy_now and targets & heavy_now:
                heavy_now.add(module)
                changed = True
    return heavy_now


ALL = modules()


def test_every_module_has_a_layer():
    assert [m for m, _, _ in ALL if m != "talkbench" and layer_of(m) is None] == []


def test_layers_import_downwards_only():
    upward = []
    for module, path, tree in ALL:
        own = layer_of(module)
        for target, _, line, _ in imports(tree, module, path):
            rank = layer_of(target)
            if own is not None and rank is not None and rank > own:
                upward.append(f"{path.relative_to(ROOT)}:{line} {LAYERS[own][0]} imports {target} ({LAYERS[rank][0]})")
    assert upward == []


def test_no_module_imports_another_modules_private_name():
    private = []
    for module, path, tree in ALL:
        for target, names, line, _ in imports(tree, module, path):
            if target.startswith("talkbench") and target != module:
                private += [f"{path.relative_to(ROOT)}:{line} {target}.{n}" for n in names
                            if n.startswith("_") and not n.startswith("__")]
                private += [f"{path.relative_to(ROOT)}:{line} {target}" for part in target.split(".")
                            if part.startswith("_") and not part.startswith("__")]
    assert private == []


def test_the_cli_starts_without_the_heavy_modules():
    """What ARCHITECTURE.md promises of the heavy list: ``talkbench --help`` never pays for it."""
    probe = ("import sys, talkbench.cli; "
             "print(sorted(m for m in ('torch', 'cv2', 'ray', 'whisper', 'numba', 'onnxruntime', 'sklearn') "
             "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_only_the_stores_talk_sql():
    talkers = []
    for module, path, tree in ALL:
        for target, _, line, _ in imports(tree, module, path):
            if target.split(".")[0] in ("duckdb", "sqlite3") and module not in STORES:
                talkers.append(f"{path.relative_to(ROOT)}:{line} imports {target}")
    assert talkers == []


def test_imports_inside_functions_are_the_listed_heavy_ones():
    """An import sits inside a function only when it is heavy: a third-party module listed in
    ARCHITECTURE.md, or a talkbench module that loads one at its top."""
    heavy = heavy_imports()
    assert {"torch", "dlib", "ray"} <= heavy
    heavy_modules = heavy_talkbench_modules(ALL, heavy)
    known = {m for m, _, _ in ALL}
    hidden = []
    for module, path, tree in ALL:
        for target, names, line, inside in imports(tree, module, path):
            # ``from talkbench.x import y`` imports the module x.y when there is one
            wanted = [f"{target}.{n}" for n in names if f"{target}.{n}" in known] or [target]
            hidden += [f"{path.relative_to(ROOT)}:{line} {w}" for w in wanted
                       if inside and not listed(w, heavy) and w not in heavy_modules]
    assert hidden == []


def test_the_readme_names_every_environment_variable_the_code_reads():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    used = set()
    for path in SRC.rglob("*.py"):
        used |= set(re.findall(r"\"(TALKBENCH_[A-Z_]+)\"", path.read_text(encoding="utf-8")))
    assert used and sorted(v for v in used if v not in readme) == []
