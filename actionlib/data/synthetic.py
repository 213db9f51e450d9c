"""The built-in synthetic temporal benchmark (``actionlib synth``), written in the Jester layout.

Each clip shows one *moving* object over a textured background with static distractor objects.
Classes come in time-mirrored pairs (class ``2p + 1`` is class ``2p`` played backwards: move
right / left, down / up, rotate clockwise / counter-clockwise, grow / shrink, fade in / out, ...).
Every appearance and motion parameter is drawn from the clip's own random stream *before* and
independently of its class, so the set of frames of a clip says nothing about the direction
inside a pair: a frame-order-blind model (TSN) cannot beat ~50% within a pair.

Layout (read unchanged by ``build_dataset("jester", out)``)::

    out/frames/<id>/00001.jpg ...    RGB frames (JPEG)
    out/masks/<id>/00001.png ...     ground-truth mask of the moving object (0 / 255)
    out/jester-v1-train.csv          "<id>;<label text>"
    out/jester-v1-validation.csv
    out/jester-v1-labels.csv         one class name per line
    out/synthetic.json               generation parameters (written last: marks completion)

Deterministic per seed: clip ``i`` uses ``numpy.random.default_rng([seed, i])`` whatever the
number of worker processes.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

HELP = "write the synthetic temporal benchmark (mirrored motion pairs) in the Jester layout"

FORMAT_VERSION = 1
PAIRS = (
    ("Move right", "Move left"),
    ("Move down", "Move up"),
    ("Rotate clockwise", "Rotate counter-clockwise"),
    ("Grow", "Shrink"),
    ("Fade in", "Fade out"),
    ("Move diagonally down-right", "Move diagonally up-left"),
    ("Orbit clockwise", "Orbit counter-clockwise"),
)
MOTIONS = ("move_x", "move_y", "rotate", "scale", "fade", "move_diag", "orbit")
MAX_CLASSES = 2 * len(PAIRS)
DEFAULTS = {"clips": 2000, "frames": 16, "size": 64, "seed": 0, "num_classes": 10, "val_fraction": 0.2}
SHAPES = ("ellipse", "rectangle", "triangle", "cross", "lshape", "arrow")
TEXTURES = ("solid", "stripes", "checker", "dots", "half")
SUPERSAMPLE = 2
JPEG_QUALITY = 90


def class_names(num_classes: int = 10) -> list[str]:
    if not 2 <= num_classes <= MAX_CLASSES or num_classes % 2:
        raise ValueError(f"num_classes must be even and in [2, {MAX_CLASSES}], got {num_classes}")
    return [name for pair in PAIRS[: num_classes // 2] for name in pair]


# ---------------------------------------------------------------------------------------------
# parameters


def _colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0, 255, 3)


def _distinct_colour(rng: np.random.Generator, avoid: list[np.ndarray], min_dist: float = 110.0) -> np.ndarray:
    for _ in range(50):
        c = _colour(rng)
        if all(np.linalg.norm(c - a) >= min_dist for a in avoid):
            return c
    return c


def _shape_params(rng: np.random.Generator, avoid: list[np.ndarray]) -> dict:
    c1 = _distinct_colour(rng, avoid)
    return {
        "shape": SHAPES[rng.integers(len(SHAPES))],
        "aspect": float(rng.uniform(0.45, 0.8)),
        "texture": TEXTURES[rng.integers(len(TEXTURES))],
        "freq": float(rng.uniform(2.0, 4.0)),
        "phase": float(rng.uniform(0, 2 * np.pi)),
        "colour1": c1,
        "colour2": _distinct_colour(rng, [c1], 80.0),
    }


def draw_params(rng: np.random.Generator, size: int) -> dict:
    """All appearance and motion parameters of one clip (independent of its class)."""
    bg1 = _colour(rng)
    bg2 = bg1 + rng.uniform(-70, 70, 3)
    p = {
        "bg_kind": int(rng.integers(4)),  # flat, gradient, blobs, stripes
        "bg1": bg1,
        "bg2": np.clip(bg2, 0, 255),
        "bg_angle": float(rng.uniform(0, 2 * np.pi)),
        "bg_freq": float(rng.uniform(1.0, 3.0)),
        "bg_blobs": rng.uniform(0, 1, (4, 3)),  # x, y, radius of soft blobs
        "noise": float(rng.uniform(0.0, 5.0)),
    }
    obj = _shape_params(rng, [bg1, np.clip(bg2, 0, 255)])
    obj["radius"] = float(rng.uniform(0.17, 0.24) * size)
    obj["angle"] = float(rng.uniform(0, 2 * np.pi))
    p["object"] = obj
    nd = int(rng.integers(0, 3))
    p["distractors"] = []
    for _ in range(3):  # always draw 3 so the stream does not depend on nd
        d = _shape_params(rng, [bg1])
        d["radius"] = float(rng.uniform(0.08, 0.14) * size)
        d["angle"] = float(rng.uniform(0, 2 * np.pi))
        d["x"], d["y"] = (float(v) for v in rng.uniform(0.1, 0.9, 2) * size)
        p["distractors"].append(d)
    p["distractors"] = p["distractors"][:nd]
    # motion parameters of every family (the class picks one)
    r = obj["radius"]
    p["travel"] = float(rng.uniform(0.35, 0.5) * size)
    p["cx"], p["cy"] = (float(v) for v in rng.uniform(-1, 1, 2))  # trajectory centre, in [-1, 1] of the slack
    p["pos"] = rng.uniform(r + 0.05 * size, size - r - 0.05 * size, 2)  # static position
    p["turn"] = float(rng.uniform(0.5, 0.9) * np.pi)
    p["zoom"] = float(rng.uniform(2.2, 3.0))
    p["alpha_lo"] = float(rng.uniform(0.0, 0.15))
    p["orbit_r"] = float(rng.uniform(0.16, 0.22) * size)
    p["orbit_turn"] = float(rng.uniform(1.0, 1.5) * np.pi)
    p["orbit_phase"] = float(rng.uniform(0, 2 * np.pi))
    return p


def trajectory(p: dict, motion: str, progress: np.ndarray, size: int):
    """Per-frame (x, y, angle, radius, alpha) of the moving object for ``progress`` in [0, 1]."""
    t = np.asarray(progress, dtype=np.float64)
    n = len(t)
    r0 = p["object"]["radius"]
    x = np.full(n, p["pos"][0])
    y = np.full(n, p["pos"][1])
    ang = np.full(n, p["object"]["angle"])
    rad = np.full(n, r0)
    alpha = np.ones(n)
    if motion in ("move_x", "move_y", "move_diag"):
        travel = p["travel"] / (math.sqrt(2) if motion == "move_diag" else 1.0)
        slack = max(size - 2 * r0 - travel, 0.0) / 2
        c = size / 2 + np.array([p["cx"], p["cy"]]) * slack
        d = (t - 0.5) * travel
        if motion in ("move_x", "move_diag"):
            x = c[0] + d
        if motion in ("move_y", "move_diag"):
            y = c[1] + d
        if motion == "move_x":
            y = np.full(n, size / 2 + p["cy"] * (size / 2 - r0 - 0.03 * size))
        if motion == "move_y":
            x = np.full(n, size / 2 + p["cx"] * (size / 2 - r0 - 0.03 * size))
    elif motion == "rotate":  # y points down, so an increasing angle turns clockwise on screen
        ang = ang + p["turn"] * t
    elif motion == "scale":
        rad = r0 * np.exp(math.log(p["zoom"]) * (t - 0.5))
    elif motion == "fade":
        alpha = p["alpha_lo"] + (1 - p["alpha_lo"]) * t
    elif motion == "orbit":
        phi = p["orbit_phase"] + p["orbit_turn"] * t
        x = size / 2 + p["orbit_r"] * np.cos(phi)
        y = size / 2 + p["orbit_r"] * np.sin(phi)
    else:
        raise ValueError(f"unknown motion {motion!r}")
    return x, y, ang, rad, alpha


# ---------------------------------------------------------------------------------------------
# rendering (vectorised over frames, 2x supersampled for anti-aliasing)


def _inside(shape: str, u: np.ndarray, v: np.ndarray, aspect: float) -> np.ndarray:
    au, av_ = np.abs(u), np.abs(v)
    if shape == "ellipse":
        return u * u + (v / aspect) ** 2 <= 1
    if shape == "rectangle":
        return (au <= 1) & (av_ <= aspect)
    if shape == "triangle":  # pointing to -v
        return (v <= 0.6) & (v >= -1 + 1.6 * au)
    if shape == "cross":  # arms of unequal length: no rotational symmetry
        return ((u >= -0.55) & (u <= 1) & (av_ <= 0.28)) | ((au <= 0.28) & (v >= -0.8) & (v <= 0.8))
    if shape == "lshape":
        return ((u >= -0.9) & (u <= 0.9) & (v >= 0.35) & (v <= 0.9)) | ((u >= -0.9) & (u <= -0.35) & (av_ <= 0.9))
    if shape == "arrow":
        return ((u >= -1) & (u <= 0.2) & (av_ <= 0.3)) | ((u > 0.2) & (u <= 1) & (av_ <= (1 - u) * 0.9))
    raise ValueError(shape)


def _texture(kind: str, u: np.ndarray, v: np.ndarray, freq: float, phase: float) -> np.ndarray:
    """Boolean 'second colour' map in object coordinates (moves and turns with the object)."""
    if kind == "solid":
        return np.zeros(u.shape, bool)
    if kind == "stripes":
        return np.sin(freq * np.pi * u + phase) > 0
    if kind == "checker":
        return (np.sin(freq * np.pi * u + phase) > 0) ^ (np.sin(freq * np.pi * v) > 0)
    if kind == "dots":
        return np.sin(freq * np.pi * u + phase) * np.sin(freq * np.pi * v) > 0.5
    if kind == "half":
        return u > 0.1
    raise ValueError(kind)


def _render_shapes(sp: dict, x, y, ang, rad, size: int):
    """Coverage (n, S, S) and premultiplied colour (n, S, S, 3) of a shape at per-frame poses."""
    ss = SUPERSAMPLE
    g = (np.arange(size * ss, dtype=np.float32) + 0.5) / ss
    gx = g[None, None, :]
    gy = g[None, :, None]
    x = np.asarray(x, np.float32)[:, None, None]
    y = np.asarray(y, np.float32)[:, None, None]
    c = np.cos(np.asarray(ang, np.float32))[:, None, None]
    s = np.sin(np.asarray(ang, np.float32))[:, None, None]
    r = np.asarray(rad, np.float32)[:, None, None]
    dx, dy = gx - x, gy - y
    u = (dx * c + dy * s) / r
    v = (-dx * s + dy * c) / r
    inside = _inside(sp["shape"], u, v, sp["aspect"])
    second = _texture(sp["texture"], u, v, sp["freq"], sp["phase"]) & inside
    n = inside.shape[0]
    # 2x2 box downsampling of inside and of the second-colour map
    cov = inside.reshape(n, size, ss, size, ss).mean(axis=(2, 4), dtype=np.float32)
    sec = second.reshape(n, size, ss, size, ss).mean(axis=(2, 4), dtype=np.float32)
    c1 = np.asarray(sp["colour1"], np.float32)
    c2 = np.asarray(sp["colour2"], np.float32)
    col = (cov - sec)[..., None] * c1 + sec[..., None] * c2
    return cov, col


def _background(p: dict, size: int) -> np.ndarray:
    g = (np.arange(size, dtype=np.float32) + 0.5) / size
    X, Y = np.meshgrid(g, g)
    k = p["bg_kind"]
    if k == 0:
        w = np.zeros_like(X)
    elif k == 1:
        w = (X * np.cos(p["bg_angle"]) + Y * np.sin(p["bg_angle"]) + 1) / 2
        w = (w - w.min()) / max(w.max() - w.min(), 1e-6)
    elif k == 2:
        w = np.zeros_like(X)
        for bx, by, br in p["bg_blobs"]:
            w += np.exp(-((X - bx) ** 2 + (Y - by) ** 2) / (2 * (0.1 + 0.2 * br) ** 2))
        w = np.clip(w, 0, 1)
    else:
        w = (np.sin(2 * np.pi * p["bg_freq"] * (X * np.cos(p["bg_angle"]) + Y * np.sin(p["bg_angle"]))) + 1) / 2
    return ((1 - w)[..., None] * p["bg1"] + w[..., None] * p["bg2"]).astype(np.float32)


def render_clip(p: dict, label: int, frames: int, size: int, rng: np.random.Generator | None = None):
    """Render a clip: uint8 frames (F, S, S, 3) and bool masks (F, S, S).

    Class ``2m + 1`` is class ``2m`` with the progress reversed, so with the same ``p`` (and no
    noise, ``rng=None``) it gives exactly the same frames in reverse order.
    """
    motion = MOTIONS[label // 2]
    progress = np.linspace(0.0, 1.0, frames)
    if label % 2:
        progress = progress[::-1]
    bg = _background(p, size)
    for d in p["distractors"]:
        cov, col = _render_shapes(d, [d["x"]], [d["y"]], [d["angle"]], [d["radius"]], size)
        bg = bg * (1 - cov[0, ..., None]) + col[0]
    x, y, ang, rad, alpha = trajectory(p, motion, progress, size)
    cov, col = _render_shapes(p["object"], x, y, ang, rad, size)
    a = alpha.astype(np.float32)[:, None, None, None]
    img = bg[None] * (1 - a * cov[..., None]) + a * col
    if rng is not None and p["noise"] > 0:
        img += rng.standard_normal(img.shape, dtype=np.float32) * p["noise"]
    frames_u8 = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    return frames_u8, cov >= 0.5


def make_clip(seed: int, clip_index: int, label: int, frames: int, size: int):
    """The clip number ``clip_index`` (0-based) of a dataset with ``seed``: (frames, masks)."""
    rng = np.random.default_rng([int(seed), int(clip_index)])
    p = draw_params(rng, size)
    return render_clip(p, label, frames, size, rng)


# ---------------------------------------------------------------------------------------------
# writing


def _labels(n: int, num_classes: int, val_fraction: float, seed: int):
    """Balanced labels for train and val clips; clip ids 1..n, the first n_train are train."""
    n_val = int(round(n * val_fraction))
    n_train = n - n_val
    rng = np.random.default_rng([int(seed), 2**31 - 1])
    train = rng.permutation(np.arange(n_train) % num_classes)
    val = rng.permutation(np.arange(n_val) % num_classes)
    return np.concatenate([train, val]).astype(int), n_train


def _write_chunk(args) -> int:
    from PIL import Image

    out, seed, start, labels, frames, size = args
    out = Path(out)
    for k, label in enumerate(labels):
        i = start + k
        vid = str(i + 1)
        rgb, masks = make_clip(seed, i, int(label), frames, size)
        fdir, mdir = out / "frames" / vid, out / "masks" / vid
        fdir.mkdir(parents=True, exist_ok=True)
        mdir.mkdir(parents=True, exist_ok=True)
        for f in range(frames):
            Image.fromarray(rgb[f]).save(fdir / f"{f + 1:05d}.jpg", quality=JPEG_QUALITY)
            Image.fromarray(masks[f].astype(np.uint8) * 255).save(mdir / f"{f + 1:05d}.png", compress_level=1)
    return len(labels)


def generate_synthetic(
    out,
    clips: int = DEFAULTS["clips"],
    frames: int = DEFAULTS["frames"],
    size: int = DEFAULTS["size"],
    seed: int = DEFAULTS["seed"],
    *,
    num_classes: int = DEFAULTS["num_classes"],
    val_fraction: float = DEFAULTS["val_fraction"],
    workers: int | None = None,
    progress: bool = True,
) -> Path:
    """Write the synthetic benchmark to ``out`` (Jester layout, see the module docstring)."""
    from .._progress import tqdm

    classes = class_names(num_classes)
    if clips < 2 or frames < 2 or size < 16:
        raise ValueError(f"need clips >= 2, frames >= 2, size >= 16; got {clips}, {frames}, {size}")
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    meta_path = out / "synthetic.json"
    if meta_path.exists():
        meta_path.unlink()
    labels, n_train = _labels(clips, num_classes, val_fraction, seed)
    chunk = 25
    tasks = [(str(out), seed, s, labels[s : s + chunk], frames, size) for s in range(0, clips, chunk)]
    workers = min(os.cpu_count() or 1, 8) if workers is None else max(1, int(workers))
    bar = tqdm(total=clips, desc="synth", unit="clip", disable=not progress)
    try:
        if workers == 1:
            for t in tasks:
                bar.update(_write_chunk(t))
        else:
            import multiprocessing as mp

            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            with ctx.Pool(workers) as pool:
                for n in pool.imap_unordered(_write_chunk, tasks):
                    bar.update(n)
    finally:
        bar.close()
    with open(out / "jester-v1-labels.csv", "w", encoding="utf-8") as f:
        f.writelines(c + "\n" for c in classes)
    for fname, ids in (("jester-v1-train.csv", range(n_train)), ("jester-v1-validation.csv", range(n_train, clips))):
        with open(out / fname, "w", encoding="utf-8") as f:
            f.writelines(f"{i + 1};{classes[labels[i]]}\n" for i in ids)
    meta = {"format_version": FORMAT_VERSION, "clips": clips, "frames": frames, "size": size, "seed": seed,
            "num_classes": num_classes, "val_fraction": val_fraction, "classes": classes}  # fmt: skip
    tmp = out / "synthetic.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1))
    os.replace(tmp, meta_path)
    return out


def ensure_synthetic(root, **params) -> Path:
    """Generate the benchmark at ``root`` unless a complete one with the same parameters is there."""
    import fcntl

    root = Path(root)
    want = {k: params.get(k, v) for k, v in DEFAULTS.items()}
    root.mkdir(parents=True, exist_ok=True)
    meta_path = root / "synthetic.json"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes building the same root: one generates
        if meta_path.exists():
            meta = json.loads(meta_path.read_text())
            have = {k: meta.get(k) for k in DEFAULTS}
            if meta.get("format_version") == FORMAT_VERSION and have == want:
                return root
            raise ValueError(
                f"{meta_path} describes a synthetic dataset with {have} (format {meta.get('format_version')}), "
                f"not the requested {want} (format {FORMAT_VERSION}); use another root or delete it"
            )
        if (root / "frames").exists():
            log.info("%s has an incomplete synthetic dataset (no synthetic.json): regenerating", root)
        log.info("generating the synthetic benchmark %s in %s", want, root)
        generate_synthetic(root, want["clips"], want["frames"], want["size"], want["seed"],
                           num_classes=want["num_classes"], val_fraction=want["val_fraction"],
                           workers=params.get("workers"), progress=params.get("progress", True))  # fmt: skip
    return root


def default_root(**params) -> Path:
    """``$ACTIONLIB_DATA`` (default ``~/.cache/actionlib``) ``/synthetic-<params>``."""
    p = {k: params.get(k, v) for k, v in DEFAULTS.items()}
    base = Path(os.environ.get("ACTIONLIB_DATA", Path.home() / ".cache" / "actionlib"))
    tag = f"synthetic-n{p['clips']}-f{p['frames']}-s{p['size']}-c{p['num_classes']}-seed{p['seed']}"
    if p["val_fraction"] != DEFAULTS["val_fraction"]:
        tag += f"-v{p['val_fraction']}"
    return base / tag


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output folder (Jester layout)")
    parser.add_argument("--clips", type=int, default=DEFAULTS["clips"], help="number of clips (train + val)")
    parser.add_argument("--frames", type=int, default=DEFAULTS["frames"], help="frames per clip")
    parser.add_argument("--size", type=int, default=DEFAULTS["size"], help="frame width and height (pixels)")
    parser.add_argument("--seed", type=int, default=DEFAULTS["seed"], help="random seed (same seed, same bytes)")
    parser.add_argument("--classes", type=int, default=DEFAULTS["num_classes"],
                        help=f"number of classes (even, <= {MAX_CLASSES}: mirrored pairs)")  # fmt: skip
    parser.add_argument("--val-fraction", type=float, default=DEFAULTS["val_fraction"], help="share of val clips")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: CPU count, at most 8)")


def main(args: argparse.Namespace) -> int:
    import time

    t0 = time.perf_counter()
    out = generate_synthetic(args.out, args.clips, args.frames, args.size, args.seed,
                             num_classes=args.classes, val_fraction=args.val_fraction,
                             workers=args.workers)  # fmt: skip
    dt = time.perf_counter() - t0
    print(f"wrote {args.clips} clips x {args.frames} frames at {args.size}x{args.size} "
          f"({args.classes} classes) to {out} in {dt:.1f} s")  # fmt: skip
    return 0
