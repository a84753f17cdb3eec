"""The Python modules a stage's command runs, and their command-line arguments, read from the
interpolated ``cmd`` (no shell is run).

A command line is split at the shell's control operators (``&&``, ``||``, ``;``, ``|``, ``&``,
newlines) and at ``$(``, ``(`` and ``)``, so that ``START=$(python -m a ...) && python -m b``
gives two invocations; quoting follows POSIX (``shlex``). An invocation is ``python -m X``
(``python3``, ``python3.11``, a path ending in one; interpreter options before ``-m``),
``accelerate launch [options] -m X`` or ``torchrun [options] -m X``, each possibly after
``VAR=value`` assignments or ``env``. Arguments after the module: ``--name value``,
``--name=value``, a bare ``--flag`` (followed by another option, or last) is ``True``; anything
else is positional (the first is the subcommand, e.g. ``extract`` of ``freshllm.residual``).
A flag directly followed by a positional reads as taking it as its value: the project's
commands put their subcommand before options or after ``--params <file>``.
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from typing import Any

_PUNCT = "();<>|&\n"
_ASSIGN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
_PYTHON = re.compile(r"python(\d+(\.\d+)*)?")
_NUMBER = re.compile(r"-\d+(\.\d*)?([eE][-+]?\d+)?")


@dataclass(frozen=True)
class Call:
    """One ``python -m <module>`` (or launcher ``-m <module>``) in a stage's command."""

    module: str                              # e.g. freshllm.cpt
    launcher: str                            # python / accelerate launch / torchrun
    args: tuple[str, ...]                    # everything after the module
    options: tuple[tuple[str, Any], ...]     # (--name, value or True), in order
    positionals: tuple[str, ...]

    @property
    def subcommand(self) -> str | None:
        return self.positionals[0] if self.positionals else None

    @property
    def name(self) -> str:
        """``module`` or ``module subcommand``: what the plan keys its cost models by."""
        return f"{self.module} {self.subcommand}" if self.subcommand else self.module

    def get(self, option: str, default: Any = None) -> Any:
        """The value of ``--option`` (the last one given, as argparse takes it)."""
        found = default
        for key, value in self.options:
            if key == option:
                found = value
        return found

    def path(self, option: str) -> str | None:
        """``--option``'s value as a normalised relative path (None where not given or a flag)."""
        value = self.get(option)
        return norm(value) if isinstance(value, str) else None


def norm(path: str) -> str:
    return os.path.normpath(path) if path else path


def _is_option(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NUMBER.fullmatch(token)


def parse_args(tokens: list[str]) -> tuple[tuple[tuple[str, Any], ...], tuple[str, ...]]:
    options: list[tuple[str, Any]] = []
    positionals: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "--":
            positionals += tokens[i + 1:]
            break
        if _is_option(tok):
            if "=" in tok and tok.startswith("--"):
                key, value = tok.split("=", 1)
                options.append((key, value))
            elif i + 1 < len(tokens) and not _is_option(tokens[i + 1]):
                options.append((tok, tokens[i + 1]))
                i += 1
            else:
                options.append((tok, True))
        else:
            positionals.append(tok)
        i += 1
    return tuple(options), tuple(positionals)


def _segments(command: str) -> list[list[str]]:
    """The simple commands of a command line: tokens between control operators."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=_PUNCT)
    lexer.whitespace = " \t\r"
    lexer.whitespace_split = True
    lexer.commenters = ""
    segments: list[list[str]] = [[]]
    try:
        for tok in lexer:
            if tok and all(c in _PUNCT for c in tok):
                segments.append([])  # "$(" arrives as "...$" then "(": the "(" splits
            else:
                segments[-1].append(tok)
    except ValueError:  # unbalanced quotes (the shell would refuse it): plain words
        segments = [command.split()]
    return [seg for seg in segments if seg]


def _call(tokens: list[str]) -> Call | None:
    while tokens and (_ASSIGN.match(tokens[0]) or tokens[0] in ("env", "exec", "time", "nohup")):
        tokens = tokens[1:]
    if not tokens:
        return None
    prog = os.path.basename(tokens[0])
    if _PYTHON.fullmatch(prog):
        launcher, rest, found = "python", tokens[1:], None
        i = 0
        while i < len(rest):  # interpreter options, then -m <module> (a script or -c: no module)
            tok = rest[i]
            if tok == "-m":
                found = (rest[i + 1], rest[i + 2:]) if i + 1 < len(rest) else None
                break
            if tok.startswith("-m") and not tok.startswith("--"):
                found = (tok[2:], rest[i + 1:])  # python -mfreshllm.x
                break
            if tok == "-c" or not tok.startswith("-"):
                break
            i += 2 if tok in ("-W", "-X") else 1
    elif prog == "accelerate" and tokens[1:2] == ["launch"]:
        launcher = "accelerate launch"
        found = _launcher_module(tokens[2:])
    elif prog == "torchrun":
        launcher = "torchrun"
        found = _launcher_module(tokens[1:])
    else:
        return None
    if not found:
        return None
    module, args = found
    options, positionals = parse_args(args)
    return Call(module, launcher, tuple(args), options, positionals)


def _launcher_module(tokens: list[str]) -> tuple[str, list[str]] | None:
    """accelerate launch / torchrun: ``-m`` (``--module``) is a flag; the module is the first
    positional after it (the launcher's options take values: ``--config_file x``)."""
    for i, tok in enumerate(tokens):
        if tok in ("-m", "--module"):
            rest = tokens[i + 1:]
            j = 0
            while j < len(rest) and rest[j].startswith("-"):
                j += 1 if "=" in rest[j] else 2
            return (rest[j], rest[j + 1:]) if j < len(rest) else None
    return None


def calls(commands: str | tuple[str, ...] | list[str]) -> list[Call]:
    """Every module invocation in a stage's command(s), in the order they run."""
    if isinstance(commands, str):
        commands = [commands]
    found = []
    for command in commands:
        for seg in _segments(command):
            call = _call(seg)
            if call is not None:
                found.append(call)
    return found
