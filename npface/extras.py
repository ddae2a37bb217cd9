"""Optional extras: the one error for a missing one, and the one way to import one.

The core (numpy, numba, scipy, pillow, threadpoolctl) never imports an extra at
module level; a feature that needs one calls ``import_extra`` when it runs, so a
missing package is a one-line ``MissingExtra`` that names what to install::

    onnx = import_extra("onnx", "onnx", "ONNX export")
    # MissingExtra: ONNX export needs the onnx package, which is not installed: pip install 'npface[onnx]'

The extras are declared in pyproject.toml: ``plots``, ``progress``, ``onnx``, ``mpi``, ``detect``.
"""
import importlib


class MissingExtra(ImportError):
    """An optional package is not installed (or unusable); the message names what to install."""


def install_hint(extra: str) -> str:
    """The command that installs one extra, e.g. ``pip install 'npface[onnx]'``."""
    return f"pip install 'npface[{extra}]'"


def import_extra(module: str, extra: str, purpose: str):
    """Import ``module`` or raise MissingExtra: '<purpose> needs the <module> package ...: pip install ...'."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtra(f"{purpose} needs the {module} package, which is not installed: "
                           f"{install_hint(extra)}") from None
