"""``actionlib eval`` (see ``actionlib.engine.cli``)."""

from .cli import HELP_EVAL as HELP
from .cli import add_eval_arguments as add_arguments
from .cli import eval_main as main

__all__ = ["HELP", "add_arguments", "main"]
