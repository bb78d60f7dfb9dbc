"""service/_core.pyi must describe the built module: the same public names, and the same
public members of each class."""

import ast
import inspect
from pathlib import Path

import service._core as core

STUB = Path(__file__).resolve().parents[2] / "service" / "_core.pyi"
# Aliases used only inside the stub for readability.
STUB_ONLY = {"Line", "Level"}


def stub_tree() -> ast.Module:
    return ast.parse(STUB.read_text())


def stub_names() -> set[str]:
    names = set()
    for node in stub_tree().body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
    return names - STUB_ONLY


def module_names() -> set[str]:
    return {name for name in dir(core) if not name.startswith("_")}


def test_stub_and_module_name_the_same_things():
    assert stub_names() == module_names()


def stub_members(class_name: str) -> set[str]:
    [node] = [n for n in stub_tree().body if isinstance(n, ast.ClassDef) and n.name == class_name]
    members = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef):
            members.add(item.name)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            members.add(item.target.id)
    return {m for m in members if not m.startswith("_")}


def test_classes_have_the_stubbed_members():
    for name in ("Engine", "ReservationView", "LevelsView", "JournalBatch", "EngineState"):
        cls = getattr(core, name)
        public = {m for m in dir(cls) if not m.startswith("_")}
        assert stub_members(name) == public, name


def test_engine_method_parameters_match_the_stub():
    [engine] = [n for n in stub_tree().body if isinstance(n, ast.ClassDef) and n.name == "Engine"]
    for method in engine.body:
        if not isinstance(method, ast.FunctionDef) or method.name.startswith("_"):
            continue
        stubbed = [a.arg for a in method.args.args[1:] + method.args.kwonlyargs]
        native = getattr(core.Engine, method.name)
        signature = inspect.signature(native)
        actual = [p for p in signature.parameters if p != "self"]
        assert stubbed == actual, method.name
