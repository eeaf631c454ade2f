"""Ultralytics ``data.yaml``: the few keys a detection dataset uses, read without a YAML library.

The runtime has no YAML dependency, and a dataset file needs little of YAML: ``path``,
``train``/``val``/``test`` (a folder, a ``.txt`` list of images, or a ``[a, b]`` / block list
of either) and ``names`` (a block mapping ``0: scratch``, a block list ``- scratch``, or a flow
``[scratch, dent]`` / ``{0: scratch}``); ``nc`` and ``download`` are read and ignored. Anything
else is refused with the file and line, so a dataset is never half-understood.

Images of a split and their labels follow Ultralytics' rule: the label of ``.../images/x.png``
is ``.../labels/x.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

#: Image file suffixes a dataset may hold (what OpenCV reads; lower case).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SPLITS = ("train", "val", "test")


class DatasetError(ValueError):
    """A dataset file that cannot be used; the message is one line naming the file (and line)."""


@dataclass(frozen=True)
class DataYaml:
    """What a ``data.yaml`` says: its root, each split's sources and the class names by id."""

    file: Path
    root: Path
    splits: dict[str, tuple[str, ...]]
    names: tuple[str, ...]

    def images(self, split: str) -> list[Path]:
        """The images of ``split``, sorted (folders searched recursively).

        Raises:
            DatasetError: The split is not in the file, or a source of it does not exist.
        """
        if split not in self.splits:
            have = ", ".join(self.splits) or "none"
            raise DatasetError(f"{self.file}: has no {split!r} split (it has: {have})")
        out: list[Path] = []
        for src in self.splits[split]:
            p = Path(src) if Path(src).is_absolute() else self.root / src
            if p.is_dir():
                out += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file())
            elif p.is_file() and p.suffix == ".txt":
                for line in p.read_text().splitlines():
                    if line.strip():
                        q = Path(line.strip())
                        out.append(q if q.is_absolute() else (self.root / q).resolve())
            else:
                raise DatasetError(f"{self.file}: {split}: {p} is neither an image folder nor a .txt list of images")
        return out


def label_path(image: Path) -> Path:
    """Ultralytics' label file of an image: the last ``images`` folder of its path becomes ``labels``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def _scalar(text: str) -> str:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "'\"":
        return text[1:-1]
    return text


def _flow(text: str) -> list[str]:
    inner = text.strip()[1:-1]
    return [_scalar(x) for x in inner.split(",") if x.strip()]


def read_data_yaml(path: Path) -> DataYaml:
    """Read a ``data.yaml``.

    Raises:
        DatasetError: Missing file, a line this reader does not understand, or no ``names``.
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    top: dict[str, str] = {}
    blocks: dict[str, list[tuple[int, str]]] = {}
    current: str | None = None
    for no, raw in enumerate(lines, 1):
        line = raw.split(" #")[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        if line[0] in " \t-":
            if current is None:
                raise DatasetError(f"{path}:{no}: indented line outside a key: {raw.strip()!r}")
            blocks.setdefault(current, []).append((no, line.strip()))
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise DatasetError(f"{path}:{no}: expected 'key: value', got {raw.strip()!r}")
        current = key.strip()
        top[current] = value.strip()
    names = _names(path, top.get("names", ""), blocks.get("names", []))
    if not names:
        raise DatasetError(f"{path}: has no class names (names:)")
    base = path.parent
    root = Path(_scalar(top["path"])) if top.get("path") else base
    root = root if root.is_absolute() else (base / root)
    splits: dict[str, tuple[str, ...]] = {}
    for split in SPLITS:
        value = top.get(split, "")
        if value.startswith("["):
            splits[split] = tuple(_flow(value))
        elif value and value not in ("null", "~"):
            splits[split] = (_scalar(value),)
        elif split in blocks:
            splits[split] = tuple(_scalar(item.lstrip("- ")) for _no, item in blocks[split])
    return DataYaml(path, root, splits, names)


def _names(path: Path, inline: str, block: list[tuple[int, str]]) -> tuple[str, ...]:
    if inline.startswith("["):
        return tuple(_flow(inline))
    by_id: dict[int, str] = {}
    if inline.startswith("{"):
        entries = [(0, x) for x in inline.strip()[1:-1].split(",") if x.strip()]
    elif inline:
        raise DatasetError(f"{path}: names: expected a list or a mapping of id: name, got {inline!r}")
    else:
        entries = block
    for i, (no, item) in enumerate(entries):
        if item.startswith("-"):
            by_id[i] = _scalar(item[1:])
            continue
        key, sep, name = item.partition(":")
        try:
            by_id[int(key)] = _scalar(name)
        except ValueError:
            raise DatasetError(f"{path}:{no}: names: expected 'ID: name', got {item!r}") from None
        if not sep:
            raise DatasetError(f"{path}:{no}: names: expected 'ID: name', got {item!r}")
    if sorted(by_id) != list(range(len(by_id))):
        raise DatasetError(f"{path}: names: class ids must run 0..{len(by_id) - 1} without gaps")
    return tuple(by_id[i] for i in range(len(by_id)))


def write_data_yaml(out: Path, names: tuple[str, ...] | list[str], splits: dict[str, str]) -> Path:
    """Write ``out/data.yaml`` with ``path`` (absolute), each split's image folder and the names."""
    lines = [f"path: {Path(out).resolve()}"]
    lines += [f"{split}: {folder}" for split, folder in splits.items()]
    lines.append("names:")
    lines += [f"  {i}: {n}" for i, n in enumerate(names)]
    path = Path(out) / "data.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path
