"""One test per kind of bad input: a clear error naming the file (and line), or a counted skip."""

import json
import logging

import pytest

from actionlib.data import build_dataset
from data_fixtures import write_egogesture, write_frames, write_jester, write_ssv2


def test_missing_frame_folder(tmp_path):
    write_jester(tmp_path)
    (tmp_path / "frames" / "101").rename(tmp_path / "frames" / "gone")
    ds = build_dataset("jester", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"frames/101.*jester-v1-train.csv:2"):
        ds[1]


def test_missing_frame(tmp_path):
    write_jester(tmp_path, n_frames=(12,))
    (tmp_path / "frames" / "100" / "00002.jpg").unlink()
    ds = build_dataset("jester", tmp_path, "val", num_segments=11)
    with pytest.raises(FileNotFoundError, match=r"missing frame .*100/0001[12]\.jpg|missing frame .*00002\.jpg"):
        ds[0]


def test_corrupt_jpeg(tmp_path):
    write_jester(tmp_path)
    bad = tmp_path / "frames" / "100" / "00002.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    ds = build_dataset("jester", tmp_path, "val", num_segments=12)
    with pytest.raises(ValueError, match=r"corrupt frame .*100/00002\.jpg"):
        ds[0]


def test_empty_frame_file(tmp_path):
    write_jester(tmp_path)
    (tmp_path / "frames" / "100" / "00002.jpg").write_bytes(b"")
    with pytest.raises(ValueError, match=r"corrupt frame .*00002\.jpg.*empty"):
        build_dataset("jester", tmp_path, "val", num_segments=12)[0]


def test_unknown_label(tmp_path):
    write_jester(tmp_path)
    (tmp_path / "jester-v1-train.csv").write_text("100;Swiping Left\n101;Waving\n")
    with pytest.raises(ValueError, match=r"unknown label in .*jester-v1-train.csv, line 2: 'Waving'"):
        build_dataset("jester", tmp_path, "train")


def test_malformed_csv_line(tmp_path):
    write_jester(tmp_path)
    (tmp_path / "jester-v1-train.csv").write_text("100;Swiping Left\n\n101 Swiping Right\n")
    with pytest.raises(ValueError, match=r"malformed line in .*jester-v1-train.csv, line 3"):
        build_dataset("jester", tmp_path, "train")


def test_malformed_json(tmp_path):
    write_ssv2(tmp_path, webm=False)
    (tmp_path / "something-something-v2-validation.json").write_text('[\n{"id": "13",\n "template": }\n]')
    with pytest.raises(ValueError, match=r"malformed annotation file .*validation.json, line 3"):
        build_dataset("ssv2", tmp_path, "val")


def test_malformed_json_entry(tmp_path):
    write_ssv2(tmp_path, webm=False)
    (tmp_path / "something-something-v2-validation.json").write_text(json.dumps([{"id": "13"}]))
    with pytest.raises(ValueError, match=r"malformed entry in .*validation.json, entry 1"):
        build_dataset("ssv2", tmp_path, "val")


def test_ssv2_unknown_template(tmp_path):
    write_ssv2(tmp_path, webm=False)
    (tmp_path / "something-something-v2-validation.json").write_text(
        json.dumps([{"id": "13", "template": "Juggling [something]", "placeholders": ["balls"]}]))
    with pytest.raises(ValueError, match=r"unknown label in .*validation.json, entry 1.*Juggling something"):
        build_dataset("ssv2", tmp_path, "val")


def test_ssv2_missing_frames_and_video(tmp_path):
    write_ssv2(tmp_path, webm=False)
    ds = build_dataset("ssv2", tmp_path, "train")
    with pytest.raises(FileNotFoundError, match=r"neither the frame folder .*frames/12 nor the video file .*12\.webm"):
        ds[1]


def test_corrupt_webm(tmp_path):
    write_ssv2(tmp_path, webm=False)
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "12.webm").write_bytes(b"\x1a\x45\xdf\xa3 garbage" * 10)
    ds = build_dataset("ssv2", tmp_path, "train")
    with pytest.raises(ValueError, match=r"corrupt video .*12\.webm"):
        ds[1]


@pytest.mark.parametrize("name,content", [
    ("jester-v1-train.csv", ""), ("jester-v1-train.csv", "\n  \n"), ("jester-v1-labels.csv", ""),
])  # fmt: skip
def test_empty_annotation_file(tmp_path, name, content):
    write_jester(tmp_path)
    (tmp_path / name).write_text(content)
    with pytest.raises(ValueError, match=rf"empty .*{name}"):
        build_dataset("jester", tmp_path, "train")


def test_empty_json(tmp_path):
    write_ssv2(tmp_path, webm=False)
    (tmp_path / "something-something-v2-train.json").write_text("[]")
    with pytest.raises(ValueError, match=r"empty annotation file .*train.json"):
        build_dataset("ssv2", tmp_path, "train")


def test_missing_annotation_file(tmp_path):
    write_jester(tmp_path)
    (tmp_path / "jester-v1-validation.csv").unlink()
    with pytest.raises(FileNotFoundError, match=r"jester-v1-validation.csv"):
        build_dataset("jester", tmp_path, "val")


def test_class_index_out_of_range_egogesture(tmp_path):
    write_egogesture(tmp_path)
    (tmp_path / "labels-final-revised1" / "Subject03" / "Scene2" / "group2.csv").write_text("1,1,4\n84,1,2\n")
    with pytest.raises(ValueError, match=r"class index out of range in .*group2.csv, line 2: 84 \(allowed 1..83\)"):
        build_dataset("egogesture", tmp_path, "train")


def test_class_index_out_of_range_framelist(tmp_path):
    write_frames(tmp_path / "a", 3, "img_{:05d}.jpg")
    (tmp_path / "train_videofolder.txt").write_text("a 3 0\na 3 5\n")
    with pytest.raises(ValueError, match=r"class index out of range in .*train_videofolder.txt, line 2: 5"):
        build_dataset("framelist", tmp_path, "train", num_classes=3)


def test_class_index_out_of_range_ssv2_labels(tmp_path):
    write_ssv2(tmp_path, webm=False)
    (tmp_path / "something-something-v2-labels.json").write_text(json.dumps({"A": "0", "B": "7"}))
    with pytest.raises(ValueError, match=r"labels.json: class index 7 of 'B' out of range"):
        build_dataset("ssv2", tmp_path, "train")


def test_malformed_egogesture_row(tmp_path):
    write_egogesture(tmp_path)
    (tmp_path / "labels-final-revised1" / "Subject01" / "Scene1" / "Group1.csv").write_text("7,2,six\n")
    with pytest.raises(ValueError, match=r"malformed line in .*Subject01/Scene1/Group1.csv, line 1"):
        build_dataset("egogesture", tmp_path, "val")


def test_unknown_dataset_and_split(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'kinetics'"):
        build_dataset("kinetics", tmp_path, "train")
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        build_dataset("jester", tmp_path, "dev")


def test_skip_corrupt_loading(tmp_path, caplog):
    write_jester(tmp_path, n_frames=(6, 6, 6))
    (tmp_path / "frames" / "101" / "00003.jpg").write_bytes(b"garbage")
    ds = build_dataset("jester", tmp_path, "train", num_segments=6, skip_corrupt=True)
    with caplog.at_level(logging.WARNING):
        labels = [ds[i][1] for i in range(3)]
        labels += [ds[1][1]]  # known bad: substituted again without a new warning
        assert ds.log_skip_summary() == 1
    assert labels == [0, 2, 2, 2]  # video 101 replaced by the next one
    assert list(ds.skipped) == ["101"]
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("skipping unreadable video 101" in m for m in msgs) == 1
    assert any("skipped 1 unreadable video(s) of 3" in m for m in msgs)


def test_skip_corrupt_annotations(tmp_path, caplog):
    write_jester(tmp_path)
    (tmp_path / "jester-v1-train.csv").write_text("100;Swiping Left\n101;Waving\nbroken\n102;Swiping Right\n")
    with caplog.at_level(logging.WARNING):
        ds = build_dataset("jester", tmp_path, "train", skip_corrupt=True)
    assert ds.ids == ["100", "102"]
    msgs = [r.getMessage() for r in caplog.records]
    assert len(msgs) == 1 and "skipped 2 bad annotation entries" in msgs[0]
