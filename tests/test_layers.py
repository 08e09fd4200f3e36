"""The layers, one way down: a module imports only from its own layer group and the groups below it.

    app, serve, bench           wiring and tools: may import anything
    commands                    the `flask` commands
    simulator                   plays whole signed calls
    edge                        the HTTP edge: routes, the webhook request, payloads, signatures, errors, status
    outbound                    work done away from any request: recordings fetched, calls acted on
    calllog | vonage_helper | identity
                                the call log; Vonage's REST APIs; login tokens (none imports another)
    runtime                     logging, metrics, stop signals
    ncco, policy, events, config    the call core: plain values

Every import counts, a function's deferred ones included: a deferred import that runs the wrong way is the same
dependency, only found later.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# group -> rank; a group may import its own modules and any group of a lower rank.
RANKS = {
    "core": 0,
    "runtime": 1,
    "calllog": 2,
    "vonage_helper": 2,
    "identity": 2,
    "outbound": 3,
    "edge": 4,
    "simulator": 5,
    "commands": 6,
    "wiring": 7,
}
CORE = {"ncco", "policy", "events", "config"}
WIRING = {"app", "serve", "bench"}
PACKAGES = {"runtime", "calllog", "vonage_helper", "identity", "outbound", "edge", "simulator", "commands"}
# The only modules at the top: the call core and the wiring.
TOP_LEVEL = CORE | {"app", "serve"}


def group_of(module: str) -> str | None:
    """The layer group of a first-party module name (dotted), or None for anything else."""
    top = module.split(".")[0]
    if top in CORE:
        return "core"
    if top in WIRING:
        return "wiring"
    if top in PACKAGES:
        return top
    return None


def project_files() -> list[Path]:
    files = [path for path in ROOT.glob("*.py")]
    for package in (*PACKAGES, "bench"):
        files += sorted((ROOT / package).rglob("*.py"))
    return files


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module
            # `from calllog import access` names a module of calllog: the group is calllog's either way.
            found.append((node.lineno, module))
    return found


def upward_imports(files: list[Path]) -> list[str]:
    wrong = []
    for path in files:
        source = group_of(module_name(path))
        for line, module in imports_of(path):
            target = group_of(module)
            if target is None or target == source:
                continue
            if RANKS[target] >= RANKS[source]:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({source}) imports {module} ({target})")
    return wrong


def test_every_import_runs_down_the_layers():
    wrong = upward_imports(project_files())
    assert not wrong, "imports that run up or across the layers:\n" + "\n".join(wrong)


def test_the_layer_check_finds_an_import_that_runs_up(tmp_path, monkeypatch):
    monkeypatch.setattr("test_layers.ROOT", tmp_path)
    (tmp_path / "calllog").mkdir()
    (tmp_path / "calllog" / "rows.py").write_text("from edge.payloads import read_payload\nimport ncco\n")
    (tmp_path / "events.py").write_text("def later():\n    from runtime import logs\n")
    assert upward_imports([tmp_path / "calllog" / "rows.py", tmp_path / "events.py"]) == [
        "calllog/rows.py:1 (calllog) imports edge.payloads (edge)",
        "events.py:2 (core) imports runtime (runtime)",
    ]


def test_the_layer_check_refuses_an_import_across_one_layer(tmp_path, monkeypatch):
    monkeypatch.setattr("test_layers.ROOT", tmp_path)
    (tmp_path / "vonage_helper").mkdir()
    (tmp_path / "vonage_helper" / "calls.py").write_text(
        "from calllog.schema import Database\nfrom runtime import logs\n"
    )
    assert upward_imports([tmp_path / "vonage_helper" / "calls.py"]) == [
        "vonage_helper/calls.py:1 (vonage_helper) imports calllog.schema (calllog)"
    ]


@pytest.mark.parametrize("path", sorted(ROOT.glob("*.py")), ids=lambda path: path.name)
def test_only_the_call_core_and_the_wiring_sit_at_the_top(path):
    assert path.stem in TOP_LEVEL, f"{path.name} belongs in the package of its layer, not at the top"


def test_no_test_module_imports_another():
    """What tests share lives in tests/support (and conftest's fixtures): a test module that imported another ran
    that module's fixtures and tests' imports wherever it was used, and its helpers moved with its tests."""
    wrong = []
    for path in [*sorted((ROOT / "tests").glob("*.py")), *sorted((ROOT / "tests" / "support").glob("*.py"))]:
        for line, module in imports_of(path):
            if module and module.split(".")[0].startswith("test_"):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert not wrong, "test modules importing test modules:\n" + "\n".join(wrong)
