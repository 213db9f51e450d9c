"""Writers of tiny datasets in the real on-disk layouts (spec section 6), for the data tests.

Frame ``k`` (1-based file number) of every video is a flat image of grey level ``frame_value(k)``,
so a test can tell from the decoded pixels which frames a clip holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

H, W = 24, 32


def frame_value(k: int) -> int:
    return (10 * k) % 250


def write_frames(folder: Path, n: int, template: str, start: int = 1, size=(H, W)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(start, start + n):
        img = np.full((*size, 3), frame_value(k), np.uint8)
        Image.fromarray(img).save(folder / template.format(k), quality=95)


def decoded_numbers(frames) -> list[int]:
    """Frame numbers recovered from flat frames written by ``write_frames`` (values < 250)."""
    return [int(round(float(f.float().mean()) / 10)) for f in frames.reshape(-1, *frames.shape[-3:])]


def write_jester(root: Path, n_frames=(12, 5, 3)) -> list[str]:
    classes = ["Swiping Left", "Swiping Right", "Doing other things"]
    (root).mkdir(parents=True, exist_ok=True)
    (root / "jester-v1-labels.csv").write_text("\n".join(classes) + "\n")
    ids = [str(100 + i) for i in range(len(n_frames))]
    for vid, n in zip(ids, n_frames):
        write_frames(root / "frames" / vid, n, "{:05d}.jpg")
    lines = [f"{vid};{classes[i % 3]}" for i, vid in enumerate(ids)]
    (root / "jester-v1-train.csv").write_text("\n".join(lines) + "\n")
    (root / "jester-v1-validation.csv").write_text("\n".join(lines[:2]) + "\n")
    (root / "jester-v1-test.csv").write_text("\n".join(ids) + "\n")
    return classes


SSV2_LABELS = {
    "Pushing something from left to right": "0",
    "Putting something on a surface": "1",
    "Holding something": "2",
}


def write_ssv2(root: Path, webm: bool = True) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "something-something-v2-labels.json").write_text(json.dumps(SSV2_LABELS, indent=1))
    train = [
        {"id": "11", "label": "pushing a pen from left to right",
         "template": "Pushing [something] from left to right", "placeholders": ["a pen"]},
        {"id": "12", "label": "holding a cup", "template": "Holding [something]", "placeholders": ["a cup"]},
    ]  # fmt: skip
    val = [{"id": "13", "label": "putting a box on a surface", "template": "Putting [something] on a surface",
            "placeholders": ["a box"]}]  # fmt: skip
    (root / "something-something-v2-train.json").write_text(json.dumps(train))
    (root / "something-something-v2-validation.json").write_text(json.dumps(val))
    (root / "something-something-v2-test.json").write_text(json.dumps([{"id": "11"}, {"id": "13"}]))
    write_frames(root / "frames" / "11", 10, "{:06d}.jpg")
    write_frames(root / "frames" / "13", 6, "{:06d}.jpg")
    if webm:  # video 12 only as the original .webm
        write_video(root / "20bn-something-something-v2" / "12.webm", 9)


def write_video(path: Path, n: int, codec: str = "libvpx", size=(32, 48)) -> None:
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as out:
        stream = out.add_stream(codec, rate=12)
        stream.height, stream.width = size
        stream.pix_fmt = "yuv420p"
        for k in range(1, n + 1):
            img = np.full((*size, 3), frame_value(k), np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def write_egogesture(root: Path) -> None:
    lab = root / "labels-final-revised1"
    # Subject03 (train): Scene1 Group1.csv, Scene2 groupZ spelling; Subject01 (val)
    g1 = lab / "Subject03" / "Scene1"
    g1.mkdir(parents=True)
    (g1 / "Group1.csv").write_text("5,3,8\n12,10,14\n,,\n83,15,20\n")
    g2 = lab / "Subject03" / "Scene2"
    g2.mkdir(parents=True)
    (g2 / "group2.csv").write_text("1,1,4\n")
    v = lab / "Subject01" / "Scene1"
    v.mkdir(parents=True)
    (v / "Group1.csv").write_text("7,2,6\n")
    write_frames(root / "frames" / "Subject03" / "Scene1" / "Color" / "rgb1", 20, "{:06d}.jpg")
    write_frames(root / "frames" / "Subject03" / "Scene2" / "Color" / "rgb2", 4, "{:06d}.jpg")
    write_frames(root / "frames" / "Subject01" / "Scene1" / "Color" / "rgb1", 6, "{:06d}.jpg")
