"""``actionlib train`` (see ``actionlib.engine.cli``)."""

from .cli import HELP_TRAIN as HELP
from .cli import add_train_arguments as add_arguments
from .cli import train_main as main

__all__ = ["HELP", "add_arguments", "main"]
