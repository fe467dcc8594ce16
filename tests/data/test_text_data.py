"""Built-in text corpora and user text files: languages, splits fixed by seed, limits, errors."""

from __future__ import annotations

import json

import pytest

from zoo.data import collate, load_dataset
from zoo.data.text import catalog_languages, fortune_records, read_mo
from zoo.errors import ZooError


def test_fortunes_languages_are_real_and_clean():
    de = fortune_records("de")
    zh = fortune_records("zh")
    assert len(de) > 10000 and len(zh) > 3000
    assert any("ä" in r or "ü" in r for r in de[:200])
    assert all("\x1b" not in r and "%" != r.strip() for r in zh)  # ANSI colours stripped, separators gone
    assert sum("的" in r for r in zh) > 500


def test_fortune_splits_are_disjoint_fixed_by_seed_and_stratified():
    train = load_dataset("fortunes:lang=en+ru", split="train").texts
    val = load_dataset("fortunes:lang=en+ru", split="val").texts
    test = load_dataset("fortunes:lang=en+ru", split="test").texts
    assert not set(test) & set(train) and not set(val) & set(train)
    assert len(test) == len(val) and abs(len(train) - 8 * len(test)) < 0.02 * len(train)
    assert load_dataset("fortunes:lang=en+ru", split="test").texts == test  # same seed, same order
    assert load_dataset("fortunes:lang=en+ru", split="test", seed=1).texts != test
    langs = [item["lang"] for item in load_dataset("fortunes:lang=en+ru", split="test", limit=200)]
    assert 50 < langs.count("ru") < 150  # a limit keeps a mixture
    batch = collate([load_dataset("fortunes:de", split="test")[i] for i in range(4)])
    assert len(batch["text"]) == 4 and batch["lang"] == ["de"] * 4


def test_stdlib_code_is_the_interpreters_library():
    items = load_dataset("stdlib-code", split="all")
    paths = {item["path"] for item in items}
    assert "json/decoder.py" in paths and not any(p.startswith("test/") for p in paths)
    assert sum(len(t) for t in items.texts) > 5_000_000


def test_text_files_read_txt_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("first line\nsecond line\n\nnew paragraph\n", encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jsonl").write_text('{"text": "one"}\n\n{"text": "two", "x": 1}\n', encoding="utf-8")
    assert load_dataset(f"text-files:{tmp_path / 'a.txt'}").texts == ["first line\nsecond line\n\nnew paragraph\n"]
    lines = load_dataset(f"text-files:{tmp_path / 'a.txt'},unit=line").texts  # shuffled by the seed
    assert sorted(lines) == ["first line", "new paragraph", "second line"]
    assert len(load_dataset(f"text-files:{tmp_path / 'a.txt'},unit=paragraph")) == 2
    assert sorted(load_dataset(f"text-files:{tmp_path}").texts)[-2:] == ["one", "two"]
    (tmp_path / "bad.jsonl").write_text('{"body": "x"}\n')
    with pytest.raises(ZooError, match="no string field 'text'"):
        load_dataset(f"text-files:{tmp_path / 'bad.jsonl'}")
    (tmp_path / "latin.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(ZooError, match="not UTF-8"):
        load_dataset(f"text-files:{tmp_path / 'latin.txt'}")
    with pytest.raises(ZooError, match="matches no"):
        load_dataset(f"text-files:{tmp_path / 'nothing*.txt'}")


def test_text_mix_and_its_errors():
    mix = load_dataset({"name": "text-mix", "sources": ["fortunes:lang=eo", "fortunes:lang=bg"], "split": "test"})
    assert {item["lang"] for item in mix} == {"eo", "bg"}
    with pytest.raises(ZooError, match="unknown language"):
        load_dataset("fortunes:lang=xx")
    with pytest.raises(ZooError, match="split must be one of"):
        load_dataset("fortunes", split="dev")


def test_pycountry_parallel_pairs_translations_with_english(tmp_path):
    data = load_dataset("pycountry-parallel:langs=de+ja")
    by_lang = {}
    for item in data:
        by_lang.setdefault(item["lang"], {})[item["ref"]] = item
    assert by_lang["de"]["Germany"]["text"] == "Deutschland"
    assert by_lang["ja"]["Japan"]["text"] == "日本"
    assert by_lang["de"]["Japan"]["id"] == by_lang["ja"]["Japan"]["id"] == by_lang["en"]["Japan"]["id"]
    assert by_lang["en"]["Japan"]["text"] == "Japan"
    assert len(catalog_languages()) > 100
    (tmp_path / "x.mo").write_bytes(b"\x00" * 32)
    with pytest.raises(ZooError, match="bad magic"):
        read_mo(tmp_path / "x.mo")
    with pytest.raises(ZooError, match="no iso3166-1 catalog"):
        load_dataset("pycountry-parallel:langs=tlh")
    json.dumps(data[0])  # items are plain data
