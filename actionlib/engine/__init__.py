"""Training and evaluation engine: typed config, recipes, the loop, checkpoints, run cache.

    >>> from actionlib.engine import fit, get_recipe, evaluate, load_trained
    >>> result = fit(get_recipe("quick", arch="tsm"))      # trains, or returns the cached run
    >>> result["best_top1"], result["run_dir"], result["cached"]
    >>> model, cfg = load_trained(result["run_dir"])
    >>> evaluate(result["checkpoint"], num_clips=2, num_crops=3, out_dir="eval")

Runs go to ``config.output_root`` (default ``$ACTIONLIB_RUNS`` or ``./runs``), one folder per
run key (hash of the resolved config and the data identity). Accuracies are in percent.
"""

from .checkpoint import load_checkpoint, save_atomic
from .config import TrainConfig
from .evaluate import evaluate, load_trained
from .loop import fit
from .recipes import RECIPES, get_recipe, recipe_names

__all__ = [
    "RECIPES",
    "TrainConfig",
    "evaluate",
    "fit",
    "get_recipe",
    "load_checkpoint",
    "load_trained",
    "recipe_names",
    "save_atomic",
]
