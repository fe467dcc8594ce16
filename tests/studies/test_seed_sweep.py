"""Reading several pFID study runs together: spreads, correlations and seed-to-seed agreement, by hand."""

import json
import math

import pytest

from zoo.errors import ZooError
from zoo.studies.seed_sweep import load_study, main, sweep_summary

SUITE = {"name": "pfid-study", "data": {"name": "fashion-mnist", "split": "test"}}


def study(tmp_path, name, gfid, rfid, pfid, labels=("t1", "t2", "t3", "t4"), items=100, suite=SUITE):
    rows = [{"tokenizer": label, "quantizer": "vq", "codebook": 16, "perturbation": "off", "psnr": 20.0,
             "rfid": r, "pfid": p, "gfid": g, "usage": 1.0} for label, g, r, p in zip(labels, gfid, rfid, pfid)]
    folder = tmp_path / name
    folder.mkdir()
    (folder / "study.json").write_text(json.dumps({"rows": rows, "suite": suite, "items": items,
                                                   "command": f"run {name}", "git": "abc", "note": None}))
    return folder


def test_spreads_correlations_and_agreement_match_hand_computation(tmp_path):
    a = study(tmp_path, "a", gfid=[1, 2, 3, 4], rfid=[1, 2, 3, 4], pfid=[4, 3, 2, 1])
    b = study(tmp_path, "b", gfid=[2, 1, 3, 4], rfid=[1, 2, 3, 4], pfid=[4, 3, 2, 1])
    summary = sweep_summary([load_study(a), load_study(b / "study.json")])
    t1 = summary["tokenizers"][0]
    assert t1["tokenizer"] == "t1" and t1["gfid"]["mean"] == 1.5 and t1["gfid"]["runs"] == 2
    assert math.isclose(t1["gfid"]["std"], math.sqrt(0.5))  # (1 - 1.5)^2 + (2 - 1.5)^2 over n - 1 = 1
    assert t1["rfid"]["std"] == 0.0
    per_run = summary["correlations"]["per_run"]
    assert per_run[0]["rfid_vs_gfid"]["spearman"] == pytest.approx(1.0)
    assert per_run[1]["rfid_vs_gfid"]["spearman"] == pytest.approx(0.8)  # d = (1, 1, 0, 0): 1 - 6*2 / (4*15)
    assert per_run[0]["pfid_vs_gfid"]["spearman"] == pytest.approx(-1.0)
    # Means: gfid (1.5, 1.5, 3, 4) against rfid (1, 2, 3, 4): ranks (1.5, 1.5, 3, 4) vs (1, 2, 3, 4).
    over_means = summary["correlations"]["over_means"]["rfid_vs_gfid"]
    assert over_means["n"] == 4 and over_means["spearman"] == pytest.approx(0.9486833, rel=1e-6)
    assert summary["correlations"]["pooled"]["rfid_vs_gfid"]["n"] == 8
    (gfid_pair,) = summary["reproducibility"]["gfid"]
    assert gfid_pair["runs"] == [0, 1] and gfid_pair["spearman"] == pytest.approx(0.8)
    assert summary["reproducibility"]["rfid"][0]["spearman"] == pytest.approx(1.0)
    assert summary["reproducibility"]["usage"][0]["spearman"] is None  # constant: undefined, not 0 or 1
    assert "constant" in summary["reproducibility"]["usage"][0]["note"]


def test_three_runs_give_every_pair(tmp_path):
    runs = [study(tmp_path, name, gfid=g, rfid=[1, 2, 3, 4], pfid=[1, 2, 3, 4])
            for name, g in (("a", [1, 2, 3, 4]), ("b", [4, 3, 2, 1]), ("c", [1, 2, 4, 3]))]
    pairs = sweep_summary([load_study(r) for r in runs])["reproducibility"]["gfid"]
    assert [p["runs"] for p in pairs] == [[0, 1], [0, 2], [1, 2]]
    assert [round(p["spearman"], 6) for p in pairs] == [-1.0, 0.8, -0.8]


def test_runs_that_measured_different_things_are_refused(tmp_path):
    a = study(tmp_path, "a", [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4])
    other_tokenizers = study(tmp_path, "b", [1, 2, 3], [1, 2, 3], [1, 2, 3], labels=("t1", "t2", "t3"))
    other_items = study(tmp_path, "c", [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4], items=50)
    other_data = study(tmp_path, "d", [1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4],
                       suite={"name": "pfid-study", "data": {"name": "digits"}})
    cases = [([a, other_tokenizers], "must study the same tokenizers"),
             ([a, other_items], "must share the held-out set"),
             ([a, other_data], "must share the held-out set"),
             ([a], "at least 2 study runs"),
             ([a, a / "study.json"], "the same study was given twice")]
    for paths, message in cases:
        with pytest.raises(ZooError, match=message):
            sweep_summary([load_study(p) for p in paths])
    with pytest.raises(ZooError, match="no study.json"):
        load_study(tmp_path / "nowhere")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "study.json").write_text("{}")
    with pytest.raises(ZooError, match="not a pFID study result"):
        load_study(tmp_path / "e")


def test_command_line_writes_json_and_markdown(tmp_path, capsys):
    a = study(tmp_path, "a", [1, 2, 3, 4], [1, 2, 3, 4], [4, 3, 2, 1])
    b = study(tmp_path, "b", [2, 1, 3, 4], [1, 2, 3, 4], [4, 3, 2, 1])
    out = tmp_path / "out"
    assert main([str(a), str(b), "--out", str(out)]) == 0
    saved = json.loads((out / "sweep.json").read_text())
    assert saved["reproducibility"]["gfid"][0]["spearman"] == pytest.approx(0.8)
    text = (out / "sweep.md").read_text()
    assert "| `t1` | vq | 16 | off |" in text and "1.5 ± 0.71" in text and "| gfid | 0.8 |" in text
    assert main([str(a), "--out", str(out)]) == 2
    assert "at least 2 study runs" in capsys.readouterr().err
