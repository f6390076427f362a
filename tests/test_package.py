"""The top-level package: instant to import, every public name reachable, old names kept."""

import subprocess
import sys

import pyrodiv


def _run(code: str) -> str:
    command = [sys.executable, "-c", code]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_import_loads_neither_torch_nor_pyro():
    out = _run("import sys, pyrodiv; print('torch' in sys.modules, 'pyro' in sys.modules)")
    assert out == "False False"


def test_every_public_name_resolves_and_is_listed():
    for name in pyrodiv.__all__:
        assert getattr(pyrodiv, name) is not None, name
        assert name in dir(pyrodiv)


def test_importing_an_earlier_module_name_keeps_the_public_function():
    out = _run(
        "import pyrodiv.fit, pyrodiv.losses, pyrodiv\n"
        "print(callable(pyrodiv.fit), type(pyrodiv.fit).__name__,"
        " pyrodiv.losses.ForwardKL is pyrodiv.ForwardKL)"
    )
    assert out == "True function True"


def test_the_command_line_parses_without_torch():
    out = _run("import sys, pyrodiv.cli; print('torch' in sys.modules)")
    assert out == "False"
