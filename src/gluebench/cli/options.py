"""Command-line options generated from the declarations in `gluebench.config`, never restated.

`with_options` gives a command one ``--kebab-case`` option per declared run option: its help, short alias
and shown choices come from the declaration, a bool becomes a ``--name/--no-name`` flag and a list a
comma-separated value. Typer builds a command from its function's signature, so the generated options are
added to that signature; the function takes them as ``**options`` (None: not given on the command line,
so a ``--config`` file or the default decides).

The text of a value is parsed by the declaration itself (`parse_option`), so ``--epochs 0`` is refused with
the words a YAML file's ``epochs: 0`` gets, and before any YAML file is read, so the error blames the
command line.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, fields
from typing import Annotated, Any, TypeVar

import typer

from gluebench.config import FamilyOptions, TrainConfig, default_of, option_spec, parse_option, run_options, value_type

Command = TypeVar("Command", bound=Callable[..., None])

_PANELS = {**{f.name: "Model options" for f in fields(FamilyOptions)},
           **{f.name: "Training options" for f in fields(TrainConfig)}}
_METAVARS = {int: "<int>", float: "<float>", str: "<str>"}  # as typer shows its own options


@dataclass(frozen=True)
class Declared:
    """Parses one option's command-line text with its declaration; the test of every option reads ``name``."""

    name: str

    def __call__(self, text: str) -> Any:
        return parse_option(self.name, text)


def flag_of(name: str) -> str:
    """The long option of a declared option: ``max_grad_norm`` → ``--max-grad-norm``."""
    return "--" + name.replace("_", "-")


def _parameter(name: str, help_text: str | None) -> inspect.Parameter:
    item = {f.name: f for f in run_options()}[name]
    spec = option_spec(item)
    kind, is_list = value_type(name)
    panel = _PANELS.get(name, "Run options") if help_text is None else None
    short = (spec.short,) if spec.short else ()
    if kind is bool:
        info = typer.Option(f"{flag_of(name)}/--no-{flag_of(name)[2:]}", *short, help=help_text or spec.help,
                            rich_help_panel=panel)
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                 annotation=Annotated[bool | None, info])
    metavar = f"[{'|'.join(spec.choices)}]" if spec.choices else _METAVARS[kind]
    default = default_of(item)
    shown = ",".join(map(str, default)) if is_list else default
    info = typer.Option(flag_of(name), *short, help=help_text or spec.help, parser=Declared(name),
                        metavar=f"{metavar},..." if is_list else metavar, rich_help_panel=panel,
                        show_default=str(shown) if help_text is None and shown not in (None, "") else False)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                             annotation=Annotated[str | None, info])


def with_options(names: Iterable[str], helps: Mapping[str, str] | None = None) -> Callable[[Command], Command]:
    """Add the declared run options ``names`` to a command, which takes them as ``**options``.

    An option whose help ``helps`` replaces means something of that command's own (e.g. "with --train:"):
    it is listed with the command's other options, without the declared default.
    """

    def decorate(command: Command) -> Command:
        own = [p for p in inspect.signature(command, eval_str=True).parameters.values()
               if p.kind is not inspect.Parameter.VAR_KEYWORD]
        generated = [_parameter(name, (helps or {}).get(name)) for name in names]
        clash = {p.name for p in own} & {p.name for p in generated}
        assert not clash, f"{command.__name__} declares {clash} itself"
        # inspect.signature (and so Typer) reads __signature__; typeshed does not declare the attribute
        command.__signature__ = inspect.Signature([*own, *generated])  # type: ignore[attr-defined]
        return command

    return decorate


def given(options: Mapping[str, Any]) -> dict[str, Any]:
    """The options given on the command line (the others are None)."""
    return {name: value for name, value in options.items() if value is not None}
