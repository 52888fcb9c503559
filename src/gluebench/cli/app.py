"""The Typer application every command module registers on."""

import typer

app = typer.Typer(
    name="gluebench",
    help="Train, evaluate, submit and explain models on the GLUE benchmark.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
