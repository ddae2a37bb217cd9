"""What the command-line entry points share about their flags.

- ``output_file``: the argparse type of a flag that names a file the command will write (``--out``,
  ``--json``). It is checked as the flags are read, so that a run of minutes or hours cannot end by
  failing to save what it made.
- ``HelpFormatter``: ``--help`` with each flag's default, where it has one worth printing.
"""
import argparse

from npface.data.cache import check_writable


def output_file(text: str) -> str:
    """``text`` if a file can be written there (``npface.data.cache.check_writable``), else the one-line
    argparse error "argument --json: cannot write PATH: why". "-" (standard output, for a command that
    takes it) passes as it is."""
    if text != "-":
        try:
            check_writable(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    return text


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
