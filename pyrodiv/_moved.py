"""The package's earlier flat module names (``pyrodiv.losses``, ``pyrodiv.fit``, ...), kept
importable after the modules moved into the layer packages.

``import pyrodiv.losses`` gives the module object of ``pyrodiv.divergences.losses`` itself (not
a copy), so ``pyrodiv.losses.ForwardKL is pyrodiv.divergences.losses.ForwardKL``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import types

#: Earlier module name (under ``pyrodiv.``) -> where it lives now.
MOVED = {
    "generators": "divergences.generators",
    "estimators": "divergences.estimators",
    "targets": "divergences.targets",
    "traces": "divergences.traces",
    "losses": "divergences.losses",
    "transport": "divergences.transport",
    "score_climbing": "divergences.score_climbing",
    "quadrature": "divergences.quadrature",
    "jit": "divergences.jit",
    "fit": "inference.fit",
    "baselines": "inference.baselines",
    "inference_data": "inference.inference_data",
    "diagnostics": "inference.diagnostics",
    "comparison": "inference.comparison",
    "arviz_adapter": "inference.arviz_adapter",
    "figures": "inference.figures",
    "output": "inference.output",
    "zoo_comparison": "zoo.comparison",
}


class _Alias(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path=None, target=None):
        head, _, tail = fullname.partition(".")
        if head == "pyrodiv" and tail in MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        module = importlib.import_module(f"pyrodiv.{MOVED[spec.name.partition('.')[2]]}")
        self._spec = module.__spec__  # the import system overwrites it with the alias's
        return module

    def exec_module(self, module):
        module.__spec__ = self._spec


class _Package(types.ModuleType):
    """The ``pyrodiv`` module: importing an earlier module name that is also a public name
    (``import pyrodiv.fit``) leaves the public name (the function ``pyrodiv.fit``) in place."""

    def __setattr__(self, name, value):
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_LAZY", ()):
            return
        super().__setattr__(name, value)


def install(package: str = "pyrodiv") -> None:
    """Make the earlier names importable (idempotent) without shadowing public names."""
    if not any(isinstance(f, _Alias) for f in sys.meta_path):
        sys.meta_path.append(_Alias())
    sys.modules[package].__class__ = _Package
