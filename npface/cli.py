"""What the command-line entry points share about their flags.

- ``output_file``: the argparse type of a flag that names a file the command will write (``--out``,
  ``--json``). It is checked as the flags are read, so that a run of minutes or hours cannot end by
  failing to save what it made; ``check_output`` checks a default worked out after them.
- ``HelpFormatter``: ``--help`` with each flag's default, where it has one worth printing.
- ``run_main``: how ``python -m`` runs a command, with Ctrl-C ended by one line instead of a traceback.
"""
import argparse
import sys

from npface.data.cache import check_writable


def output_file(text: str) -> str:
    """``text`` if a file can be written there (``npface.data.cache.check_writable``), else the one-line
    argparse error "argument --json: cannot write PATH: why". "-" is refused rather than taken as a file
    of that name: it reads as standard output, which only ``output_file_or_stdout``'s commands print to."""
    if text == "-":
        raise argparse.ArgumentTypeError("this command writes files only, not standard output ('-'): give a file name")
    try:
        check_writable(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def output_file_or_stdout(text: str) -> str:
    """``output_file``, or "-" for standard output (for a command that prints there when asked)."""
    return text if text == "-" else output_file(text)


def check_output(parser, flag: str, path) -> None:
    """The same check for an output file whose path a command works out after reading its flags (a
    default that depends on other flags): argparse's one-line error, naming ``flag``, if it cannot be
    written."""
    try:
        check_writable(path)
    except ValueError as e:
        parser.error(f"{flag}: {e}")


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """argparse's ``ArgumentDefaultsHelpFormatter``, which appends "(default: X)" to every flag's help,
    but without the appendix where it says nothing or repeats the help: a required flag, a default of
    None (no value: the help says what happens then), an on/off switch (store_true), and a help text
    that already states its default."""

    def _get_help_string(self, action):
        text = action.help or ""
        if (action.required or action.default is None or isinstance(action.default, bool)
                or action.default is argparse.SUPPRESS or "default" in text):
            return text
        return super()._get_help_string(action)


def run_main(main, prog: str) -> int:
    """``main()``'s exit status; a Ctrl-C that reaches here ends the command with one line on stderr,
    "<prog>: interrupted", followed by what was kept when the KeyboardInterrupt says so (its message), and
    the status a shell gives a process ended by the signal: the exception's ``status`` if it has one, else
    130 (128 + SIGINT)."""
    try:
        return main()
    except KeyboardInterrupt as e:
        print(f"{prog}: interrupted" + (f": {e}" if str(e) else ""), file=sys.stderr)
        return getattr(e, "status", 130)
