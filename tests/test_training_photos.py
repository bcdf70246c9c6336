"""The training photos: the shared split, the extra photos from Debian and how a shipped
model records them (scripts/prepare_photos.py, fetch_extra_photos.py, ship_model.py)."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageCms

from tests.test_shipped import _script

ROOT = Path(__file__).resolve().parent.parent


def _photos(folder: Path, names: list[str], size: tuple[int, int] = (40, 30)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in names:
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / name)


def _prepare(*args: str | Path) -> subprocess.CompletedProcess:
    script = ROOT / "scripts" / "prepare_photos.py"
    command = [sys.executable, str(script), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True)


def test_extra_photos_join_training_never_validation(tmp_path: Path) -> None:
    shared, extra, out = tmp_path / "shared", tmp_path / "extra", tmp_path / "photos"
    _photos(shared, [f"photo_{i:03d}.png" for i in range(1, 6)])
    _photos(extra, ["lomiri_a.png", "lomiri_b.png"])
    result = _prepare(shared, "--out", out, "--held-out", "2", "--extra", extra)
    assert result.returncode == 0, result.stderr
    train = sorted(p.name for p in (out / "train").iterdir())
    assert train == [
        "lomiri_a.png",
        "lomiri_b.png",
        "photo_001.png",
        "photo_002.png",
        "photo_003.png",
    ]
    assert sorted(p.name for p in (out / "val").iterdir()) == ["photo_004.png", "photo_005.png"]
    # Without --extra the split is the shared one again: stale links are replaced.
    assert _prepare(shared, "--out", out, "--held-out", "2").returncode == 0
    assert len(list((out / "train").iterdir())) == 3


def test_extra_photos_refused_when_empty_or_clashing(tmp_path: Path) -> None:
    shared, out = tmp_path / "shared", tmp_path / "photos"
    _photos(shared, [f"photo_{i:03d}.png" for i in range(1, 4)])
    assert _prepare(shared, "--out", out, "--held-out", "1").returncode == 0
    empty = _prepare(shared, "--out", out, "--held-out", "1", "--extra", tmp_path / "none")
    assert empty.returncode == 1
    assert "no .png photos" in empty.stderr and "Traceback" not in empty.stderr
    _photos(tmp_path / "clash", ["photo_001.png"])
    clash = _prepare(shared, "--out", out, "--held-out", "1", "--extra", tmp_path / "clash")
    assert clash.returncode == 1 and "photo_001.png" in clash.stderr
    # A refused call leaves the previous split as it was.
    assert len(list((out / "train").iterdir())) == 2


def test_downscaled_by_an_integer_factor_of_at_least_two() -> None:
    fetch = _script("fetch_extra_photos")
    big = Image.new("RGBA", (4352, 2448))
    small = fetch.downscaled(big)
    assert small.mode == "RGB" and small.size == (4352 // 4, 2448 // 4)
    assert max(small.size) <= fetch.LONG_SIDE
    assert fetch.downscaled(Image.new("RGB", (900, 601))).size == (450, 300)


def test_downscaled_applies_the_exif_orientation(tmp_path: Path) -> None:
    fetch = _script("fetch_extra_photos")
    image = Image.new("RGB", (200, 100))
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees: the photo stands upright
    image.save(tmp_path / "rotated.jpg", exif=exif)
    assert fetch.downscaled(Image.open(tmp_path / "rotated.jpg")).size == (50, 100)


def test_photo_names_and_sources_table() -> None:
    fetch = _script("fetch_extra_photos")
    names = [p.name for p in fetch.PHOTOS]
    assert len(set(names)) == len(names) == 71
    counts = {c: len(photos) for c, photos in fetch.COLLECTIONS.items()}
    assert counts == {"lomiri": 14, "mate": 10, "kde": 8, "gcompris": 39}
    for collection, photos in fetch.COLLECTIONS.items():
        assert all(p.name.startswith(f"{collection}_") and p.name.endswith(".png") for p in photos)
    assert "lomiri_kleiber.png" in names and "kde_path.png" in names
    assert "gcompris_polarbear.png" in names
    assert all(p.license.startswith(("CC-BY", "CC0")) for p in fetch.LOMIRI)
    assert {p.license for p in fetch.MATE + fetch.KDE} == {"GPL-2.0-or-later", "LGPL-3.0"}
    assert {p.license for p in fetch.GCOMPRIS} == {
        "public domain",
        "CC0-1.0",
        "CC-BY-2.0",
        "CC-BY-SA-4.0",
    }
    assert all(p.resource and p.path.endswith(".rcc") for p in fetch.GCOMPRIS)
    assert fetch.selected(["lomiri"]) == fetch.LOMIRI and fetch.selected(None) == fetch.PHOTOS
    table = fetch.sources_table(fetch.PHOTOS, {n: (10, 20) for n in names})
    assert table.count("\n| lomiri_") == 14 and table.count("\n| mate_") == 10
    assert "| Sander Klootwijk | CC-BY-SA-4.0 | 10x20 |" in table
    assert (
        "| gcompris-qt-data | usr/share/gcompris-qt/rcc/erase.rcc:/gcompris/src/activities/"
        "erase/resource/crab.webp | Nosferattus | CC0-1.0 | 10x20 |"
    ) in table


def _qt_bundle(files: dict[str, bytes], version: int = 3, compressed: bool = True) -> bytes:
    """A Qt resource bundle (what Qt's rcc writes) of ``files``, every other one compressed."""
    root: dict = {}
    for path, blob in files.items():
        *folders, leaf = path.split("/")
        node = root
        for folder in folders:
            node = node.setdefault(folder, {})
        node[leaf] = blob
    names, data, entries = bytearray(), bytearray(), []  # entries: (name, flags, a, b)
    pending = [root]
    entries.append(["", 2, len(root), 1])
    while pending:  # breadth first: a directory's children take consecutive indices
        node = pending.pop(0)
        for name, child in node.items():
            if isinstance(child, dict):
                entries.append([name, 2, len(child), 0])
                pending.append(child)
            else:
                squeeze = compressed and len(entries) % 2 == 0
                stored = struct.pack(">I", len(child)) + zlib.compress(child) if squeeze else child
                entries.append([name, 1 if squeeze else 0, len(data), 0])
                data += struct.pack(">I", len(stored)) + stored
    # Each directory's first child: the entries listed after the directories before it.
    first = 1
    for entry in entries:
        if entry[1] == 2:
            entry[3] = first
            first += entry[2]
    table = bytearray()
    for name, flags, a, b in entries:
        offset = len(names)
        names += struct.pack(">HI", len(name), 0) + name.encode("utf-16-be")
        table += struct.pack(">IH", offset, flags)
        table += struct.pack(">II", a, b) if flags & 2 else struct.pack(">HHI", 0, 0, a)
        table += struct.pack(">Q", 0) if version >= 2 else b""
    header = 24 if version >= 3 else 20
    tree, names_at = header, header + len(table)
    data_at = names_at + len(names)
    head = b"qres" + struct.pack(">IIII", version, tree, data_at, names_at)
    head += struct.pack(">I", 0) if version >= 3 else b""
    return bytes(head + table + names + data)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_qt_resource_bundles_are_read_whole(version: int) -> None:
    fetch = _script("fetch_extra_photos")
    files = {
        "gcompris/a/x.webp": b"first" * 50,
        "gcompris/a/y.qml": b"second",
        "gcompris/b/deep/z.webp": bytes(range(256)) * 3,
        "top.txt": b"",
    }
    assert fetch.qt_resources(_qt_bundle(files, version)) == files
    assert fetch.qt_resources(_qt_bundle(files, version, compressed=False)) == files
    with pytest.raises(ValueError, match="not a Qt resource bundle"):
        fetch.qt_resources(b"PK\x03\x04 a zip file")
    zstd = bytearray(_qt_bundle({"a.webp": b"x"}, version, compressed=False))
    file_entry = (24 if version >= 3 else 20) + (14 if version < 2 else 22)  # after the root's
    zstd[file_entry + 4 : file_entry + 6] = struct.pack(">H", 4)  # its flags: zstd-compressed
    with pytest.raises(ValueError, match="zstd"):
        fetch.qt_resources(bytes(zstd))


def _not_srgb_profile() -> bytes:
    """An ICC profile like sRGB with its red and blue primaries swapped, named otherwise."""
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    (count,) = struct.unpack_from(">I", profile, 128)
    tags = {bytes(profile[132 + 12 * i : 136 + 12 * i]): 132 + 12 * i for i in range(count)}
    red, blue = tags[b"rXYZ"] + 4, tags[b"bXYZ"] + 4
    swapped = profile[blue : blue + 8], profile[red : red + 8]
    profile[red : red + 8], profile[blue : blue + 8] = swapped
    return bytes(profile).replace("sRGB".encode("utf-16-be"), "Swap".encode("utf-16-be"))


def test_photos_tagged_with_another_colour_space_are_converted_to_srgb() -> None:
    fetch = _script("fetch_extra_photos")
    red = Image.new("RGB", (8, 6), (255, 0, 0))
    assert np.asarray(fetch.in_srgb(red))[0, 0].tolist() == [255, 0, 0]  # untagged: as is
    tagged = io.BytesIO()
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    red.save(tagged, "PNG", icc_profile=srgb)
    assert np.asarray(fetch.in_srgb(Image.open(tagged)))[0, 0].tolist() == [255, 0, 0]
    other = io.BytesIO()
    red.save(other, "PNG", icc_profile=_not_srgb_profile())
    assert np.asarray(fetch.downscaled(Image.open(other)))[0, 0].tolist() == [0, 0, 255]


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb (Debian)")
def test_fetch_from_deb_files(tmp_path: Path) -> None:
    """The whole path from .deb files to training photos, on packages built here."""
    fetch = _script("fetch_extra_photos")
    debs = tmp_path / "debs"
    debs.mkdir()
    for package in sorted({p.package for p in fetch.PHOTOS}):
        tree = tmp_path / "build" / package
        (tree / "DEBIAN").mkdir(parents=True)
        control = f"Package: {package}\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\n"
        (tree / "DEBIAN" / "control").write_text(control + "Description: test\n")
        bundles: dict[str, dict[str, bytes]] = {}
        for photo in fetch.PHOTOS:
            if photo.package == package:
                (tree / photo.path).parent.mkdir(parents=True, exist_ok=True)
                image = Image.new("RGB", (64, 48), "red")
                if not photo.resource:
                    image.save(tree / photo.path, "JPEG")
                    continue
                webp = io.BytesIO()
                image.save(webp, "WEBP")
                bundles.setdefault(photo.path, {})[photo.resource] = webp.getvalue()
        for path, files in bundles.items():
            (tree / path).write_bytes(_qt_bundle(files))
        built = subprocess.run(
            ["dpkg-deb", "--build", str(tree), str(debs / f"{package}_1_all.deb")],
            capture_output=True,
        )
        assert built.returncode == 0, built.stderr
    out = tmp_path / "extra"
    script = ROOT / "scripts" / "fetch_extra_photos.py"
    command = [sys.executable, str(script), "--debs", str(debs), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    made = sorted(p.name for p in out.glob("*.png"))
    assert made == sorted(p.name for p in fetch.PHOTOS)
    assert Image.open(out / made[0]).size == (32, 24)
    assert "| 32x24 |" in (out / "SOURCES.md").read_text()
    # One collection: the folder then holds only its photos, the others' files are removed.
    only = subprocess.run([*command, "--collection", "kde"], capture_output=True, text=True)
    assert only.returncode == 0, only.stderr
    assert sorted(p.name for p in out.glob("*.png")) == sorted(p.name for p in fetch.KDE)
    assert "lomiri_" not in (out / "SOURCES.md").read_text()
    missing = subprocess.run([*command[:3], str(tmp_path / "build"), *command[4:]],
                             capture_output=True, text=True)  # fmt: skip
    assert missing.returncode == 1 and "no gcompris-qt-data_*.deb" in missing.stderr


def _training_folder(root: Path, extras: list[str]) -> Path:
    """datasets/photos/train under ``root``: links to two shared photos and to ``extras``."""
    folder = root / "datasets" / "photos" / "train"
    _photos(root / "shared", ["photo_001.png", "photo_002.png"])
    _photos(root / "extra_photos", extras)
    folder.mkdir(parents=True)
    for photo in [*(root / "shared").iterdir(), *(root / "extra_photos").iterdir()]:
        (folder / photo.name).symlink_to(photo)
    return folder


def test_shipped_model_records_its_photos(tmp_path: Path) -> None:
    describe = _script("ship_model")._data_description
    folder = _training_folder(tmp_path, ["lomiri_a.png"])
    dataset = {"dataroot_gt": "./datasets/photos/train", "degradation": "deraining"}
    assert describe(dataset, tmp_path) == (
        "datasets/photos/train (3 photos, 1 of them from scripts/fetch_extra_photos.py)"
        " + on-the-fly deraining"
    )
    (folder / "lomiri_a.png").unlink()
    assert describe(dataset, tmp_path) == "datasets/photos/train (2 photos) + on-the-fly deraining"
    assert describe({"dataroot_gt": "nowhere", "type": "T"}, tmp_path) == "nowhere + on-the-fly T"


def test_shipped_model_records_the_photos_it_was_trained_on(tmp_path: Path) -> None:
    """A run that began before the extra photos were added states its own count."""
    ship = _script("ship_model")
    _training_folder(tmp_path, ["lomiri_a.png", "lomiri_b.png"])
    dataset = {"dataroot_gt": "./datasets/photos/train", "degradation": "deraining"}
    describe = ship._data_description
    assert describe(dataset, tmp_path, trained_on=2) == (
        "datasets/photos/train (2 photos) + on-the-fly deraining"
    )
    assert describe(dataset, tmp_path, trained_on=3) == (
        "datasets/photos/train (3 photos, 1 of them from scripts/fetch_extra_photos.py)"
        " + on-the-fly deraining"
    )
    experiment = tmp_path / "run"
    experiment.mkdir()
    (experiment / "train_deraining.log").write_text(
        "training deraining: 10 parameters, 1,024 training images, 1 process\n"
        "training deraining: 10 parameters, 2 training images, 1 process\n"
    )
    run = SimpleNamespace(root=experiment)
    assert ship._trained_images({"training_images": 3}, run, "deraining") == 3
    # States saved before the trainer recorded the count: the log's last count.
    assert ship._trained_images({}, run, "deraining") == 2
    assert ship._trained_images({}, run, "motion-deblurring") is None
