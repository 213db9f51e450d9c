"""Temporal operators inserted into 2-D backbones: the TSM shift and the ACTION module."""

from .action import PATHS, ActionModule, LearnableShift
from .temporal_shift import TemporalShift, temporal_shift

__all__ = ["PATHS", "ActionModule", "LearnableShift", "TemporalShift", "temporal_shift"]
