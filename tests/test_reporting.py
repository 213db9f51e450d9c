"""Reference tables, deltas, files and the README block of actionlib.reporting."""

import math

import pandas as pd
import pytest

from actionlib import reporting as rp


def _costs():
    return pd.DataFrame([
        {"backbone": "resnet50", "arch": "tsn", "params_m": 23.865, "gmacs": 32.700},
        {"backbone": "resnet50", "arch": "tsm", "params_m": 23.865, "gmacs": 32.700},
        {"backbone": "resnet50", "arch": "action", "params_m": 28.082, "gmacs": 34.437},
        {"backbone": "resnet18", "arch": "action", "params_m": 11.386, "gmacs": 14.6},
    ])  # fmt: skip


def test_reference_sizes_cover_spec_section_4_and_tsm_equals_tsn():
    ref = rp.reference_sizes().set_index(["backbone", "arch"])
    assert len(ref) == 9
    assert ref.loc[("resnet50", "action"), "gmacs_ref"] == 34.451
    for b in ("resnet50", "mobilenetv2", "bninception"):
        assert ref.loc[(b, "tsm")].tolist() == ref.loc[(b, "tsn")].tolist()


def test_add_reference_sizes_differences_and_blanks():
    out = rp.add_reference_sizes(_costs())
    assert out.loc[2, "params_m_diff"] == 0
    assert out.loc[2, "gmacs_diff"] == pytest.approx(-0.014)
    assert math.isnan(out.loc[3, "params_m_ref"])  # no reference for ResNet-18
    # another setting than the reference's: no reference at all
    assert out.pipe(lambda d: rp.add_reference_sizes(d.drop(columns=[c for c in d if c.endswith(("_ref", "_diff", "_pct"))]),
                                                     segments=16))["gmacs_ref"].isna().all()  # fmt: skip


def test_partial_modules_get_no_reference():
    df = _costs().assign(paths=["", "", "ste", "ste+ce+me"], stages=["", "1-4", "1-4", "1-2"])
    out = rp.add_reference_sizes(df)
    assert not math.isnan(out.loc[0, "gmacs_ref"])
    assert math.isnan(out.loc[2, "gmacs_ref"])  # STE only
    assert math.isnan(out.loc[3, "gmacs_ref"])  # stages 1-2


def test_check_reference_sizes():
    rp.check_reference_sizes(rp.add_reference_sizes(_costs()))
    bad = _costs()
    bad.loc[0, "params_m"] = 23.0
    with pytest.raises(AssertionError, match="parameters differ"):
        rp.check_reference_sizes(rp.add_reference_sizes(bad))
    bad = _costs()
    bad.loc[2, "gmacs"] = 36.0
    with pytest.raises(AssertionError, match="GMACs differ"):
        rp.check_reference_sizes(rp.add_reference_sizes(bad))


def test_top1_reference_only_the_leaderboard_number():
    df = pd.DataFrame([
        {"model": "ACTION", "backbone": "resnet50", "arch": "action", "segments": 8, "paths": "ste+ce+me", "top1": 60.0},
        {"model": "STE", "backbone": "resnet50", "arch": "action", "segments": 8, "paths": "ste", "top1": 58.0},
        {"model": "TSM", "backbone": "resnet50", "arch": "tsm", "segments": 8, "paths": "", "top1": 55.0},
    ])  # fmt: skip
    ssv2 = rp.add_reference_top1(df, "ssv2")
    assert ssv2["top1_ref"].tolist()[0] == 64.0 and ssv2["top1_diff"].tolist()[0] == -4.0
    assert ssv2["top1_ref"].iloc[1:].isna().all()
    assert rp.add_reference_top1(df, "jester")["top1_ref"].isna().all()
    assert rp.add_reference_top1(df, "synthetic")["top1_ref"].isna().all()


def test_deltas_and_overhead():
    df = _costs().iloc[:3].assign(model=["TSN", "TSM", "ACTION"])
    out = rp.add_deltas(df, "TSN", ["gmacs"])
    assert out["gmacs_delta"].tolist() == pytest.approx([0.0, 0.0, 1.737])
    with pytest.raises(ValueError, match="no row with model == 'X'"):
        rp.add_deltas(df, "X", ["gmacs"])
    over = rp.add_overhead(df)
    assert over.loc[2, "gmacs_overhead_pct"] == pytest.approx(5.31)


def test_write_table_csv_and_markdown(tmp_path):
    df = pd.DataFrame({"model": ["TSN", "ACTION"], "top1": [50.0, math.nan]})
    assert rp.write_table(df, "t", None) is None  # show-only mode writes nothing
    csv = rp.write_table(df, "t", tmp_path, title="A title", notes=["a note"])
    assert csv == tmp_path / "tables" / "t.csv"
    assert pd.read_csv(csv).shape == (2, 2)
    md = (tmp_path / "tables" / "t.md").read_text()
    assert md.startswith("### A title") and "- a note" in md and "nan" not in md
    assert rp.read_table("t", tmp_path).shape == (2, 2)
    assert rp.read_table("absent", tmp_path) is None
    with pytest.raises(ValueError, match="may hold only"):
        rp.write_table(df, "../escape", tmp_path)


def test_replace_marked_block(tmp_path):
    text = f"# Title\n\n{rp.README_START}\nold\n{rp.README_END}\nrest\n"
    assert rp.replace_marked_block(text, "new") == f"# Title\n\n{rp.README_START}\nnew\n{rp.README_END}\nrest\n"
    with pytest.raises(ValueError, match="markers"):
        rp.replace_marked_block("no markers", "x")
    readme = tmp_path / "README.md"
    readme.write_text(text)
    assert rp.update_readme_block(readme, "| a |") and "| a |" in readme.read_text()
    readme.write_text("no markers\n")
    assert not rp.update_readme_block(readme, "x") and readme.read_text() == "no markers\n"
