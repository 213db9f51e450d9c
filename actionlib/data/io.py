"""Decoding of frames (JPEG/PNG files) and videos (PyAV) into uint8 ``(T, 3, H, W)`` tensors.

Every failure is a ``FileNotFoundError`` or ``ValueError`` that names the file.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image, decode_jpeg


def _read_bytes(path: str | os.PathLike) -> torch.Tensor:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise FileNotFoundError(f"missing frame {path}: the file does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"frame {path} is a directory, expected an image file") from None
    if not data:
        raise ValueError(f"corrupt frame {path}: the file is empty (expected a JPEG/PNG image)")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def decode_frame(data: torch.Tensor, path: str | os.PathLike) -> torch.Tensor:
    """Decode the bytes of one image file to uint8 ``(3, H, W)`` RGB; errors name ``path``."""
    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders (for TorchCodec)
            warnings.simplefilter("ignore", DeprecationWarning)
            if str(path).lower().endswith((".jpg", ".jpeg")):
                img = decode_jpeg(data, mode=ImageReadMode.RGB)
            else:
                img = decode_image(data, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as e:
        raise ValueError(f"corrupt frame {path}: cannot decode it as an image ({e})") from None
    return img


def read_frames(paths: Sequence[str | os.PathLike]) -> torch.Tensor:
    """Read and decode image files (each file once, even if listed twice) -> uint8 (T, 3, H, W)
    (in channels-last memory; call ``.contiguous()`` if a plain layout is needed)."""
    unique: dict[str, torch.Tensor] = {}
    for p in paths:
        key = os.fspath(p)
        if key not in unique:
            unique[key] = decode_frame(_read_bytes(key), key)
    imgs = [unique[os.fspath(p)] for p in paths]
    if not imgs:
        raise ValueError("no frames to read")
    first = imgs[0].shape
    for p, im in zip(paths, imgs):
        if im.shape != first:
            raise ValueError(
                f"frame {os.fspath(p)} has size {tuple(im.shape[1:])} but {os.fspath(paths[0])} has "
                f"{tuple(first[1:])}: all frames of a video must have the same size"
            )
    # stack as (T, H, W, 3) and view as (T, 3, H, W): channels-last memory, which is what the
    # decoder produces and what the uint8 resize kernels are fastest on (no layout copies)
    out = torch.empty((len(imgs), first[1], first[2], 3), dtype=torch.uint8)
    for k, im in enumerate(imgs):
        out[k].copy_(im.permute(1, 2, 0))
    return out.permute(0, 3, 1, 2)


def read_masks(paths: Sequence[str | os.PathLike]) -> torch.Tensor:
    """Read single-channel mask images (non-zero = object) -> bool (T, H, W)."""
    cache: dict[str, torch.Tensor] = {}
    out = []
    for p in paths:
        key = os.fspath(p)
        if key not in cache:
            data = _read_bytes(key)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    cache[key] = decode_image(data, mode=ImageReadMode.GRAY)[0] > 127
            except (RuntimeError, ValueError) as e:
                raise ValueError(f"corrupt mask {key}: cannot decode it as an image ({e})") from None
        out.append(cache[key])
    return torch.stack(out)


class _NoStream(Exception):
    pass


def read_video(path: str | os.PathLike) -> torch.Tensor:
    """Decode every frame of a video file with PyAV -> uint8 (N, 3, H, W) RGB."""
    import av  # heavy; only needed for direct video decoding

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"missing video {path}: the file does not exist")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise _NoStream
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except _NoStream:
        raise ValueError(f"corrupt video {path}: it has no video stream") from None
    except Exception as e:  # av.error.* (InvalidDataError, ...) and friends
        raise ValueError(f"corrupt video {path}: cannot decode it ({type(e).__name__}: {e})") from None
    if not frames:
        raise ValueError(f"corrupt video {path}: it decodes to 0 frames")
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)  # channels-last memory
