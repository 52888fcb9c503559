"""Command line: thin wrappers over the library; one module per group of commands.

Every module in this package registers its commands on `app` when imported. User mistakes never end in a
traceback: a `GluebenchError` (bad file, bad option value, missing data) and every usage error Typer
finds (unknown command or option, missing argument, a value it cannot parse) become one line
``gluebench: error: ...`` on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

# typer vendors its own click; this is the one exception of it not re-exported under `typer`
from typer._click.exceptions import NoArgsIsHelpError

from gluebench.cli.app import app
from gluebench.errors import GluebenchError

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def _usage_line(exc: typer.TyperException) -> str:
    """Typer's message on one line, with where to read the usage (its own output is a multi-line box)."""
    message = " ".join(line.strip() for line in exc.format_message().splitlines() if line.strip())
    ctx = getattr(exc, "ctx", None)
    return f"{message} (see '{ctx.command_path} --help')" if ctx is not None else message


def main() -> None:
    try:
        code = app(standalone_mode=False)
        if isinstance(code, int) and code:
            sys.exit(code)
    except GluebenchError as exc:
        print(f"gluebench: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except NoArgsIsHelpError as exc:  # a command group without its subcommand: the help, as click shows it
        exc.show()
        sys.exit(exc.exit_code)
    except typer.TyperException as exc:  # usage errors (exit 2) and the few other click errors (exit 1)
        print(f"gluebench: error: {_usage_line(exc)}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("gluebench: interrupted", file=sys.stderr)
        sys.exit(130)


__all__ = ["app", "main"]
