"""Decoding of frames (JPEG/PNG files) and videos (PyAV) into uint8 ``(T, 3, H, W)`` tensors.

Every failure is a ``FileNotFoundError`` or ``ValueError`` that names the file.

``read_frames(paths, region=box)`` decodes only a box of every frame: with JPEG files and the
libjpeg-turbo region decoder of :mod:`._jpeg` (see :func:`can_decode_regions`) only that box is
decoded, otherwise whole frames are decoded and cropped; the pixels are the same either way.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torchvision.io import ImageReadMode, decode_image, decode_jpeg

from . import _jpeg

JPEG_SUFFIXES = (".jpg", ".jpeg")


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


def _undecodable(kind: str, path: str | os.PathLike, err: Exception) -> ValueError:
    """The error for a file that does not decode: names the file and the decoder's reason."""
    return ValueError(f"corrupt {kind} {os.fspath(path)}: cannot decode it as an image ({err})")


def decode_frame(data: torch.Tensor, path: str | os.PathLike) -> torch.Tensor:
    """Decode the bytes of one image file to uint8 ``(3, H, W)`` RGB; errors name ``path``."""
    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its decoders (for TorchCodec)
            warnings.simplefilter("ignore", DeprecationWarning)
            if str(path).lower().endswith(JPEG_SUFFIXES):
                img = decode_jpeg(data, mode=ImageReadMode.RGB)
            else:
                img = decode_image(data, mode=ImageReadMode.RGB)
    except (RuntimeError, ValueError) as e:
        raise _undecodable("frame", path, e) from None
    return img


def can_decode_regions(paths: Sequence[str | os.PathLike]) -> bool:
    """True when ``read_frames(paths, region=...)`` decodes only the region: every file is a JPEG
    (by name) and the region decoder is available (C++ build; not ``ACTIONLIB_NO_CPP=1``)."""
    return all(os.fspath(p).lower().endswith(JPEG_SUFFIXES) for p in paths) and _jpeg.available()


def frame_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of a JPEG frame from its header alone (needs the region decoder, see
    :func:`can_decode_regions`)."""
    key = os.fspath(path)
    data = _read_bytes(key)
    try:
        h, w, _ = _jpeg.jpeg_header(data)
    except RuntimeError as e:
        raise _undecodable("frame", key, e) from None
    return h, w


def _check_size(paths: Sequence[str | os.PathLike], k: int, size: tuple[int, int], first: tuple[int, int]) -> None:
    if size != first:
        raise ValueError(
            f"frame {os.fspath(paths[k])} has size {tuple(size)} but {os.fspath(paths[0])} has "
            f"{tuple(first)}: all frames of a video must have the same size"
        )


def _check_region(path: str, region: tuple[int, int, int, int] | None, size: tuple[int, int]) -> None:
    if region is None:
        return
    top, left, h, w = region
    if not (top >= 0 and left >= 0 and h >= 1 and w >= 1 and top + h <= size[0] and left + w <= size[1]):
        raise ValueError(f"region (top, left, height, width) = {tuple(region)} does not lie inside frame {path} "
                         f"of size {tuple(size)}")  # fmt: skip


def read_frames(
    paths: Sequence[str | os.PathLike], region: tuple[int, int, int, int] | None = None
) -> torch.Tensor:
    """Read and decode image files (each file once, even if listed twice) -> uint8 (T, 3, H, W)
    (in channels-last memory; call ``.contiguous()`` if a plain layout is needed).

    ``region=(top, left, height, width)``: only that box of every frame -> (T, 3, height, width),
    decoded alone where :func:`can_decode_regions` (else cropped from the whole frame). The box
    must lie inside the frames."""
    keys = [os.fspath(p) for p in paths]
    if not keys:
        raise ValueError("no frames to read")
    if region is not None and can_decode_regions(keys):
        return _read_regions(keys, region)
    unique: dict[str, torch.Tensor] = {}
    for key in keys:
        if key not in unique:
            unique[key] = decode_frame(_read_bytes(key), key)
    imgs = [unique[key] for key in keys]
    first = tuple(imgs[0].shape[1:])
    for k, im in enumerate(imgs):
        _check_size(keys, k, tuple(im.shape[1:]), first)
    _check_region(keys[0], region, first)
    top, left, h, w = (0, 0, *first) if region is None else region
    # stack as (T, H, W, 3) and view as (T, 3, H, W): channels-last memory, which is what the
    # decoder produces and what the uint8 resize kernels are fastest on (no layout copies)
    out = torch.empty((len(imgs), h, w, 3), dtype=torch.uint8)
    for k, im in enumerate(imgs):
        out[k].copy_(im[:, top : top + h, left : left + w].permute(1, 2, 0))
    return out.permute(0, 3, 1, 2)


def _read_regions(keys: list[str], region: tuple[int, int, int, int]) -> torch.Tensor:
    """``read_frames(keys, region)`` with the region decoder: each box decoded straight into
    its slot of the (T, height, width, 3) output."""
    top, left, h, w = (int(v) for v in region)
    out = torch.empty((len(keys), h, w, 3), dtype=torch.uint8)
    done: dict[str, int] = {}
    first: tuple[int, int] | None = None
    for k, key in enumerate(keys):
        if key in done:
            out[k].copy_(out[done[key]])
            continue
        data = _read_bytes(key)
        try:
            fh, fw, decoded = _jpeg.decode_region_into(data, out[k], top, left)
        except RuntimeError as e:
            raise _undecodable("frame", key, e) from None
        if not decoded:  # CMYK / YCCK, or a frame smaller than the box: decode it whole
            img = decode_frame(data, key)  # (3, H, W)
            fh, fw = img.shape[1:]
        first = first or (fh, fw)
        _check_size(keys, k, (fh, fw), first)
        if not decoded:
            _check_region(key, region, (fh, fw))
            out[k].copy_(img[:, top : top + h, left : left + w].permute(1, 2, 0))
        done[key] = k
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
                raise _undecodable("mask", key, e) from None
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
