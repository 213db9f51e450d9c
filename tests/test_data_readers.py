"""Tiny fixtures in each real layout, read back through build_dataset."""

import torch

from actionlib.data import build_dataset, build_transform
from data_fixtures import H, W, decoded_numbers, write_egogesture, write_frames, write_jester, write_ssv2, write_video


def test_jester(tmp_path):
    classes = write_jester(tmp_path, n_frames=(12, 5, 3))
    ds = build_dataset("jester", tmp_path, "val", num_segments=4)
    assert ds.classes == classes
    assert len(ds) == 2 and ds.labels == [0, 1] and ds.ids == ["100", "101"]
    clip, label = ds[0]
    assert clip.shape == (4, 3, H, W) and clip.dtype == torch.uint8 and label == 0
    item = ds.get(0)
    assert item["indices"].tolist() == [1, 4, 7, 10]
    assert decoded_numbers(item["frames"]) == [2, 5, 8, 11]  # files 00002.jpg ...
    # short video (3 frames, 4 segments): spread with repetition
    tr = build_dataset("jester", tmp_path, "train", num_segments=4)
    item = tr.get(2)
    assert sorted(set(item["indices"].tolist())) == [0, 1, 2]
    assert decoded_numbers(item["frames"]) == [i + 1 for i in item["indices"].tolist()]
    te = build_dataset("jester", tmp_path, "test", num_segments=4)
    assert te.labels == [-1, -1, -1]


def test_jester_multiclip_and_transform(tmp_path):
    write_jester(tmp_path)
    ds = build_dataset("jester", tmp_path, "val", num_segments=3, num_clips=2,
                       transform=build_transform(False, size=16, scale_size=20))  # fmt: skip
    clip, label = ds[0]
    assert clip.shape == (2, 3, 3, 16, 16) and clip.dtype == torch.float32
    assert ds.get(0)["indices"].tolist() == [[1, 5, 9], [3, 7, 11]]


def test_ssv2_frames_webm_and_brackets(tmp_path):
    write_ssv2(tmp_path)
    ds = build_dataset("ssv2", tmp_path, "train", num_segments=3, random_sampling=False)
    assert ds.classes == ["Pushing something from left to right", "Putting something on a surface", "Holding something"]
    assert ds.labels == [0, 2] and ds.ids == ["11", "12"]
    item = ds.get(0)  # extracted frames, 6-digit names
    assert item["frames"].shape == (3, 3, H, W)
    assert decoded_numbers(item["frames"]) == [i + 1 for i in item["indices"].tolist()]
    item = ds.get(1)  # no frame folder: decodes 12.webm with PyAV
    assert ds.num_frames(1) == 9
    assert item["indices"].tolist() == [1, 4, 7]
    assert item["frames"].shape == (3, 3, 32, 48)
    got = decoded_numbers(item["frames"])
    assert all(abs(g - (i + 1)) <= 0.5 for g, i in zip(got, item["indices"].tolist()))
    val = build_dataset("ssv2", tmp_path, "val", num_segments=2)
    assert val.labels == [1]
    test = build_dataset("ssv2", tmp_path, "test", num_segments=2)
    assert test.labels == [-1, -1] and test[1][0].shape == (2, 3, H, W)


def test_egogesture(tmp_path):
    write_egogesture(tmp_path)
    ds = build_dataset("egogesture", tmp_path, "train", num_segments=4)
    assert len(ds.classes) == 83
    # blank row skipped; Group1.csv and group2.csv both read
    assert ds.labels == [4, 11, 82, 0]
    assert ds.ids[0] == "Subject03/Scene1/rgb1/3-8"
    ds.random_sampling = False
    item = ds.get(0)  # frames 3..8 of rgb1
    assert item["indices"].tolist() == [0, 2, 3, 5]
    assert decoded_numbers(item["frames"]) == [3, 5, 6, 8]
    assert decoded_numbers(ds.get(3)["frames"]) == [1, 2, 3, 4]
    val = build_dataset("egogesture", tmp_path, "val", num_segments=2)
    assert val.labels == [6] and val[0][0].shape == (2, 3, H, W)
    assert len(build_dataset("egogesture", tmp_path, "trainval")) == 5
    assert build_dataset("egogesture", tmp_path, "test", subjects=[1]).labels == [6]


def test_framelist(tmp_path):
    write_frames(tmp_path / "rawframes" / "a", 7, "img_{:05d}.jpg")
    write_frames(tmp_path / "rawframes" / "b", 2, "img_{:05d}.jpg")
    (tmp_path / "train_videofolder.txt").write_text("rawframes/a 7 1\nrawframes/b 2 0\n")
    (tmp_path / "classes.txt").write_text("zero\none\n")
    ds = build_dataset("framelist", tmp_path, "train", num_segments=4, random_sampling=False)
    assert ds.classes == ["zero", "one"] and ds.labels == [1, 0]
    assert ds.get(0)["indices"].tolist() == [0, 2, 4, 6]
    assert decoded_numbers(ds.get(0)["frames"]) == [1, 3, 5, 7]
    assert ds.get(1)["indices"].tolist() == [0, 0, 1, 1]


def test_videolist(tmp_path):
    write_video(tmp_path / "my clips" / "one.mp4", 8, codec="mpeg4")
    write_video(tmp_path / "two.webm", 4)
    (tmp_path / "train_videos.txt").write_text("my clips/one.mp4 2\ntwo.webm 0\n")
    ds = build_dataset("videolist", tmp_path, "train", num_segments=4, num_classes=3, random_sampling=False)
    assert ds.labels == [2, 0] and ds.classes == ["0", "1", "2"]
    clip, label = ds[0]
    assert clip.shape == (4, 3, 32, 48) and label == 2
    assert ds.get(0)["indices"].tolist() == [1, 3, 5, 7]
    assert ds.get(1)["indices"].tolist() == [0, 1, 2, 3]
