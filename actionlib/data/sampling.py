"""Frame sampling of spec section 5 (TSN segments), with a proper rule for short videos.

All indices are 0-based positions inside the video (the frame *file* number is
``start + index``, ``start`` being 1 for the usual ``00001.jpg`` naming).
"""

from __future__ import annotations

import numpy as np
import torch


def sample_indices(
    num_frames: int,
    num_segments: int,
    *,
    random: bool = False,
    num_clips: int = 1,
    clip_index: int | None = None,
    generator: torch.Generator | None = None,
) -> np.ndarray:
    """Frame indices of a clip of ``num_segments`` frames from a video of ``num_frames`` frames.

    The video is cut into ``num_segments`` equal segments (boundaries ``floor(i * n / T)``).

    - ``random=True`` (training): one frame drawn uniformly inside each segment.
    - ``random=False`` (validation / test): the middle frame of each segment,
      ``floor((i + 0.5) * n / T)``. With ``num_clips=K`` the K clips are evenly offset inside the
      segments, clip ``k`` taking ``floor((i + (k + 0.5) / K) * n / T)`` (K = 1 is the middle frame).

    Videos shorter than ``num_segments`` frames get the same formulas, which then spread the
    frames evenly with repetition (e.g. 3 frames, 8 segments -> 0 0 0 1 1 1 2 2), never all 0.

    Returns an int64 array of shape ``(T,)``, or ``(K, T)`` when ``num_clips > 1`` and
    ``clip_index`` is None (``clip_index=k`` returns clip ``k`` only, shape ``(T,)``).
    """
    n, t, k_all = int(num_frames), int(num_segments), int(num_clips)
    if n < 1:
        raise ValueError(f"cannot sample from a video with {n} frames (need at least 1)")
    if t < 1:
        raise ValueError(f"num_segments must be >= 1, got {t}")
    if k_all < 1:
        raise ValueError(f"num_clips must be >= 1, got {k_all}")
    if clip_index is not None and not 0 <= clip_index < k_all:
        raise ValueError(f"clip_index must be in [0, {k_all}), got {clip_index}")
    i = np.arange(t, dtype=np.int64)
    clips = range(k_all) if clip_index is None else [int(clip_index)]
    out = []
    for k in clips:
        if random:
            starts = (i * n) // t
            ends = np.maximum(((i + 1) * n) // t, starts + 1)
            u = torch.rand(t, generator=generator, dtype=torch.float64).numpy()
            idx = np.minimum(starts + np.floor(u * (ends - starts)).astype(np.int64), ends - 1)
        else:
            # floor((i + (k + 0.5) / K) * n / T), in exact integer arithmetic
            idx = ((2 * (i * k_all + k) + 1) * n) // (2 * k_all * t)
        out.append(np.minimum(idx, n - 1))
    if len(out) == 1:
        return out[0]
    return np.stack(out)
