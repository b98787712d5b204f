"""Nothing ganji reads is ever unpickled: no pickle module, and every torch.load has weights_only=True.

Unpickling a file runs whatever code it holds, so a checkpoint, a dataset or a weights file from
someone else could take over the machine. ganji stores tensors as safetensors plus JSON; the one
torch.load it has (a pytorch-fid Inception state dict) passes weights_only=True. This test reads the
package's source with `ast`, so it sees every call, also on code paths the other tests never run;
conftest.py adds a runtime guard on torch.load for the whole test session.
"""

from __future__ import annotations

import ast
import io
from pathlib import Path

import pytest
import torch

import ganji

PACKAGE = Path(ganji.__file__).parent
PICKLERS = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
UNPICKLING_READERS = {"CIFAR10", "CIFAR100"}


def sources() -> list[Path]:
    found = sorted(PACKAGE.rglob("*.py"))
    assert len(found) > 30, found  # the scan sees the whole package
    return found


class Scan(ast.NodeVisitor):
    """Problems in one module: pickle imports and calls, and torch.load without weights_only=True."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[str] = []
        self.torch_names = {"torch"}  # names bound to the torch module (import torch as T)
        self.load_names: set[str] = set()  # names bound to torch.load (from torch import load as L)
        self.torch_loads = 0

    def where(self, node: ast.AST) -> str:
        return f"{self.name}:{getattr(node, 'lineno', '?')}"

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            root = alias.name.split(".")[0]
            if root in PICKLERS:
                self.problems.append(f"{self.where(node)}: import {alias.name}")
            if alias.name == "torch":
                self.torch_names.add(alias.asname or "torch")
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        root = (node.module or "").split(".")[0]
        if root in PICKLERS:
            self.problems.append(f"{self.where(node)}: from {node.module} import ...")
        if node.module in ("torch", "torch.serialization"):
            for alias in node.names:
                if alias.name == "load":
                    self.load_names.add(alias.asname or "load")
        self.generic_visit(node)

    def is_torch(self, node: ast.AST) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.torch_names
        # torch.serialization.load
        return isinstance(node, ast.Attribute) and node.attr == "serialization" and self.is_torch(node.value)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        # Library readers whose file format is pickle (torchvision's CIFAR classes read the python batches).
        if node.attr in UNPICKLING_READERS:
            self.problems.append(f"{self.where(node)}: {node.attr} unpickles its files")
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        torch_load = (isinstance(func, ast.Attribute) and func.attr == "load" and self.is_torch(func.value)) or (
            isinstance(func, ast.Name) and func.id in self.load_names
        )
        if torch_load:
            self.torch_loads += 1
            given = {kw.arg: kw.value for kw in node.keywords}
            value = given.get("weights_only")
            if None in given:
                self.problems.append(f"{self.where(node)}: torch.load(**...) hides weights_only")
            elif not (isinstance(value, ast.Constant) and value.value is True):
                self.problems.append(f"{self.where(node)}: torch.load without weights_only=True")
        # pickle.load(s) / Unpickler through any alias, and numpy's allow_pickle=True
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id in PICKLERS:
            self.problems.append(f"{self.where(node)}: {func.value.id}.{func.attr}(...)")
        for kw in node.keywords:
            if kw.arg == "allow_pickle" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                self.problems.append(f"{self.where(node)}: allow_pickle={ast.unparse(kw.value)}")
        self.generic_visit(node)


def scan(code: str, name: str = "<snippet>") -> Scan:
    visitor = Scan(name)
    visitor.visit(ast.parse(code))
    return visitor


def test_no_pickle_and_every_torch_load_is_weights_only() -> None:
    problems: list[str] = []
    torch_loads = 0
    for path in sources():
        result = scan(path.read_text("utf-8"), str(path.relative_to(PACKAGE.parent)))
        problems += result.problems
        torch_loads += result.torch_loads
    assert problems == [], "\n".join(problems)
    assert torch_loads >= 1  # the Inception weights loader: the scan does find torch.load calls


@pytest.mark.parametrize(
    "code",
    [
        "import torch\ntorch.load('x')",
        "import torch\ntorch.load('x', weights_only=False)",
        "import torch as T\nT.load('x', map_location='cpu')",
        "from torch import load\nload('x')",
        "from torch import load as L\nL('x', weights_only=None)",
        "import torch\ntorch.serialization.load('x')",
        "import torch\nkw = {}\ntorch.load('x', **kw)",
        "import pickle",
        "from pickle import loads",
        "import _pickle as p",
        "import numpy as np\nnp.load('x.npy', allow_pickle=True)",
        "import torchvision\ntorchvision.datasets.CIFAR10('root', download=True)",
        "import torchvision\nreaders = {'cifar10': torchvision.datasets.CIFAR10}",
    ],
)
def test_the_scan_catches_each_way_to_unpickle(code: str) -> None:
    assert scan(code).problems, code


def test_the_scan_accepts_safe_loads() -> None:
    ok = "import torch\nimport json\ntorch.load('x', map_location='cpu', weights_only=True)\njson.load(f)\nmodel.load('x')"
    assert scan(ok).problems == []


def test_torch_load_is_guarded_while_the_tests_run() -> None:
    """conftest.py makes any torch.load without weights_only=True fail, in every test of the suite."""
    buf = io.BytesIO()
    torch.save({"w": torch.ones(2)}, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=True)["w"], torch.ones(2))
    buf.seek(0)
    with pytest.raises(AssertionError, match="weights_only=True"):
        torch.load(buf)
