"""The ``data.yaml`` reader: the forms Ultralytics, CVAT and Roboflow write, and one line for the rest."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector.quality.data_yaml import DatasetError, label_path, read_data_yaml


@pytest.mark.parametrize(
    "names",
    ["names:\n  0: scratch\n  1: 'dent'\n", "names:\n  - scratch\n  - dent\n", "names: [scratch, \"dent\"]\n",
     "names: {0: scratch, 1: dent}\n", "nc: 2\nnames: ['scratch', 'dent']  # two classes\n"],
)
def test_names_in_every_form(tmp_path: Path, names: str) -> None:
    (tmp_path / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\n" + names)
    d = read_data_yaml(tmp_path / "data.yaml")
    assert d.names == ("scratch", "dent")
    assert d.splits == {"train": ("images/train",), "val": ("images/val",)}
    assert d.root == tmp_path / "."


def test_split_lists_folders_and_txt_files(tmp_path: Path) -> None:
    for sub in ("a", "b"):
        (tmp_path / "images" / sub).mkdir(parents=True)
        (tmp_path / "images" / sub / f"{sub}.png").write_bytes(b"")
    (tmp_path / "list.txt").write_text("images/a/a.png\n")
    (tmp_path / "data.yaml").write_text(
        "train: [images/a, images/b]\nval:\n  - list.txt\ntest:\nnames:\n  0: scratch\n")
    d = read_data_yaml(tmp_path / "data.yaml")
    assert [p.name for p in d.images("train")] == ["a.png", "b.png"]
    assert [p.name for p in d.images("val")] == ["a.png"]
    with pytest.raises(DatasetError, match=r"has no 'test' split \(it has: train, val\)"):
        d.images("test")
    assert label_path(tmp_path / "images" / "a" / "a.png") == tmp_path / "labels" / "a" / "a.txt"


@pytest.mark.parametrize(
    "text, expect",
    [("names:\n  0: a\n  2: b\n", "class ids must run 0..1 without gaps"),
     ("train images\nnames: [a]\n", ":1: expected 'key: value'"),
     ("names:\n  zero: a\n", ":2: names: expected 'ID: name'"),
     ("train: x\n", "has no class names")],
)
def test_what_it_does_not_understand_is_one_line(tmp_path: Path, text: str, expect: str) -> None:
    (tmp_path / "data.yaml").write_text(text)
    with pytest.raises(DatasetError, match=expect):
        read_data_yaml(tmp_path / "data.yaml")
