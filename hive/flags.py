"""Command-line flags of every edgebridge command, checked before anything starts.

The value rules (a port is 1-65535, a duration is a positive finite number of seconds...) are
pydantic types declared once here and used by the settings models' fields; a flag's argparse
``type=`` is the same rule, through :func:`setting`, so ``--heartbeat -5`` is refused by the
settings model's own constraint, with the flag's name, before a file is opened or a port bound.

A bad flag is one line on stderr and exit code 2 (argparse's convention for usage errors), never
a usage dump or a traceback: see :class:`Parser`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Annotated, Any, NoReturn

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

#: a TCP port to dial or to listen on
Port = Annotated[int, Field(ge=1, le=65535)]
#: a port to listen on; 0 lets the OS pick a free one (what tests use; the bound port is logged).
#: Flags use :data:`Port`: an operator always names the port.
ListenPort = Annotated[int, Field(ge=0, le=65535)]
#: a duration, seconds, more than zero
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
#: a rate or a pause that may be switched off with 0
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
#: a count of at least one
Positive = Annotated[int, Field(ge=1)]


def checked(rule: Any) -> Callable[[str], Any]:
    """An argparse ``type=`` that parses a flag's text with a pydantic type (and its Field
    constraints); argparse turns the failure into ``argument --flag: <reason>``."""
    adapter: TypeAdapter[Any] = TypeAdapter(rule)

    def parse(text: str) -> Any:
        try:
            return adapter.validate_python(text.strip(), strict=False)
        except ValidationError as exc:
            raise argparse.ArgumentTypeError(
                f"{text!r}: {_reason(exc.errors(include_url=False)[0])}"
            ) from None

    return parse


def setting(model: type[BaseModel], field: str) -> Callable[[str], Any]:
    """An argparse ``type=`` checking a flag with the settings field it ends up in: the field's
    type and its ``Field`` constraints, declared once, in the model."""
    info = model.model_fields[field]
    if not info.metadata:  # a plain type (``Literal``, ``Path``): Annotated needs a constraint
        return checked(info.annotation)
    return checked(Annotated[info.annotation, *info.metadata])


def _reason(error: Any) -> str:
    ctx = {k: _number(v) for k, v in (error.get("ctx") or {}).items()}
    kind = error.get("type", "")
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "greater_than":
        return f"must be more than {ctx['gt']}"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind == "less_than":
        return f"must be less than {ctx['lt']}"
    return str(error.get("msg", "invalid value")).lower()


def _number(value: Any) -> Any:
    """``0.0`` -> ``0`` in messages (a bound written as a float in a Field)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (``edgecore run: argument --heartbeat: '-5':
    must be more than 0 (see --help)``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: {message} (see --help)", file=sys.stderr)
        sys.exit(2)
