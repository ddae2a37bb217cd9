"""Nothing in the docs rots: their code runs, their commands parse, the tour passes.

The rules (docs/README.md states them for writers):

- Every fenced block opened with exactly ```python in docs/**/*.md is executed,
  each in a fresh namespace, from the repository root, on one thread. A block whose first
  line is ``# not run: <reason>`` (with a reason) is skipped; nothing else is.
- In ```bash blocks of docs/**/*.md and README.md, every ``python -m npface.X``
  or ``python -m benchmarks.X`` must name a module that exists, and its flags
  must parse with that module's own argparse parser: its ``main(argv)`` is
  called with ``parse_args`` stopped right after parsing, so nothing runs.
  Placeholders are allowed: a ``...`` token is dropped and ``[--flag]``
  (an optional flag, in brackets) is parsed as ``--flag``.
- ``python -m npface.tour --small`` passes every one of its checks.
"""
import argparse
import contextlib
import importlib
import io
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
SKIP = re.compile(r"#\s*not run:\s*\S")
COMMAND = re.compile(r"python3? -m ((?:npface|benchmarks)\.[A-Za-z_][\w.]*)(.*)")
SHELL_OPERATORS = {"&&", "||", "|", ";", "&", ">", ">>", "2>", "2>&1"}


def doc_files():
    return sorted(DOCS.rglob("*.md"))


def blocks(path, language):
    """(line number, code) of every fenced block of ``language`` in ``path``."""
    text = path.read_text(encoding="utf-8")
    for m in FENCE.finditer(text):
        if m.group(1).strip() == language:
            yield text.count("\n", 0, m.start()) + 1, m.group(2)


def python_blocks():
    for path in doc_files():
        for line, code in blocks(path, "python"):
            yield pytest.param(path, code, id=f"{path.relative_to(ROOT)}:{line}")


def commands():
    """(file:line, module, argv) of every npface / benchmarks command in bash blocks."""
    for path in doc_files() + [ROOT / "README.md"]:
        for line, code in blocks(path, "bash"):
            for logical in re.sub(r"\\\n", " ", code).splitlines():
                m = COMMAND.search(logical)
                if not m:
                    continue
                argv = []
                for token in shlex.split(m.group(2), comments=True):
                    if token in SHELL_OPERATORS or token.startswith((">", "2>")):
                        break
                    if token != "...":
                        argv.append(token.strip("[]") if token.startswith("[") else token)
                yield pytest.param(m.group(1), argv, id=f"{path.relative_to(ROOT)}:{line}:{m.group(1)}")


def test_the_docs_have_code_to_check():
    assert list(python_blocks()), "no ```python block found under docs/"
    assert list(commands()), "no python -m command found in the ```bash blocks"


@pytest.mark.parametrize("path, code", list(python_blocks()))
def test_python_block_runs(path, code, monkeypatch):
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    if SKIP.match(first):
        pytest.skip(first.lstrip("# "))
    from npface.threads import limit
    monkeypatch.chdir(ROOT)
    with limit(1):      # the blocks' arrays are tiny: on a busy machine a thread pool only adds waiting
        exec(compile(code, str(path), "exec"), {"__name__": "__docs__"})


class _Parsed(Exception):
    def __init__(self, namespace):
        self.namespace = namespace


@contextlib.contextmanager
def stop_after_parsing():
    """Make ArgumentParser.parse_args / parse_known_args raise _Parsed with the result instead of returning it."""
    parse_args, parse_known = argparse.ArgumentParser.parse_args, argparse.ArgumentParser.parse_known_args
    inside = []

    def stop_parse_args(self, args=None, namespace=None):
        inside.append(True)
        try:
            result = parse_args(self, args, namespace)
        finally:
            inside.pop()
        raise _Parsed(result)

    def stop_parse_known(self, args=None, namespace=None):
        result = parse_known(self, args, namespace)
        if inside:
            return result
        raise _Parsed(result)

    argparse.ArgumentParser.parse_args = stop_parse_args
    argparse.ArgumentParser.parse_known_args = stop_parse_known
    try:
        yield
    finally:
        argparse.ArgumentParser.parse_args = parse_args
        argparse.ArgumentParser.parse_known_args = parse_known


@pytest.mark.parametrize("module, argv", list(commands()))
def test_documented_command_parses(module, argv):
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        pytest.fail(f"python -m {module}: no such module ({e})")
    assert hasattr(mod, "main"), f"python -m {module}: the module has no main(argv)"
    stderr = io.StringIO()
    with stop_after_parsing(), contextlib.redirect_stderr(stderr):
        try:
            mod.main(argv)
        except _Parsed:
            return
        except SystemExit as e:
            pytest.fail(f"python -m {module} {' '.join(argv)}: the flags do not parse (exit {e.code}): "
                        f"{stderr.getvalue().strip()}")
    pytest.fail(f"python -m {module}: main() returned without parsing its arguments with argparse")


def test_the_tour_passes_on_its_smallest_setting(capsys):
    from npface import tour
    status = tour.main(["--small", "--threads", "1"])
    out = capsys.readouterr()
    assert status == 0, f"the tour failed:\n{out.out[-3000:]}\n{out.err}"
    assert "FAILED" not in out.out and "All " in out.out


LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_resolve():
    """Every relative link in docs/**/*.md points at a file or folder that exists."""
    broken = []
    for path in doc_files():
        for target in LINK.findall(path.read_text(encoding="utf-8")):
            if "://" not in target and not (path.parent / target).exists():
                broken.append(f"{path.relative_to(ROOT)}: {target}")
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_the_tour_fails_loudly_and_names_the_check(monkeypatch, capsys):
    """A wrong signature gradient (10% too large) must fail the loss stage's check and the run."""
    from npface import ops, tour
    right = ops.pair_hinge_backward

    def wrong(cache, dloss=1.0):
        demb, dthreshold = right(cache, dloss)
        return 1.1 * demb, dthreshold

    monkeypatch.setattr(ops, "pair_hinge_backward", wrong)
    assert tour.main(["--small", "--threads", "1", "--race-steps", "1"]) == 1
    err = capsys.readouterr().err
    assert "checks failed" in err and "loss backward" in err


def test_pictures_are_small_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from npface import pictures
    assert pictures.main(["--out", str(tmp_path)]) == 0
    for name in ("warp.png", "distances.png", "conv-dataflow.png"):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) < 100_000, name
