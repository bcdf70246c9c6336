"""Image folders -> lists of files, and input/target pairing by name.

Pairing follows the official ``paired_paths_from_folder``: for every target ``<stem>.<ext>``
the input folder must hold ``filename_tmpl.format(stem)`` (any image extension), and the two
folders must hold the same number of images. Where the official code stops at the first
mismatch with an ``AssertionError``, this lists the first few so that a whole folder can be
fixed at once. Files are taken in name order, so runs are reproducible whatever order the file
system lists them in.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from restormer.data.options import DatasetOptionError
from restormer.io import IMAGE_SUFFIXES, images_in

__all__ = ["pair_by_name", "scan_images"]

_SHOWN = 5  # names listed in a message before "..."


def scan_images(folder: Path, key: str) -> list[Path]:
    """The non-hidden image files directly in ``folder``, sorted by name.

    ``key`` is the full option key (``datasets.train.dataroot_gt``) that errors name.
    """
    try:
        if not folder.exists():
            raise DatasetOptionError(f"{key}: no such folder '{folder}'")
        if not folder.is_dir():
            raise DatasetOptionError(f"{key}: '{folder}' is not a folder")
        files = images_in(folder)
    except PermissionError:
        raise DatasetOptionError(f"{key}: permission denied reading '{folder}'") from None
    except OSError as exc:
        raise DatasetOptionError(f"{key}: cannot list '{folder}': {exc.strerror or exc}") from None
    if not files:
        suffixes = ", ".join(sorted(IMAGE_SUFFIXES))
        raise DatasetOptionError(f"{key}: no images in '{folder}' (looked for {suffixes})")
    return files


def pair_by_name(
    targets: Sequence[Path],
    inputs: Sequence[Path],
    filename_tmpl: str,
    *,
    input_key: str,
    target_key: str,
) -> list[Path]:
    """For each target, the input file named ``filename_tmpl.format(target stem)``.

    Raises :class:`DatasetOptionError` naming ``input_key`` if a target has no input, if an
    input has no target, or if an expected input stem exists with two extensions.
    """
    by_stem: dict[str, list[Path]] = {}
    for path in inputs:
        by_stem.setdefault(path.stem, []).append(path)
    ambiguous = sorted(stem for stem, paths in by_stem.items() if len(paths) > 1)
    paired: list[Path] = []
    missing: list[str] = []
    used: set[str] = set()
    for target in targets:
        stem = filename_tmpl.format(target.stem)
        candidates = by_stem.get(stem)
        if not candidates:
            missing.append(target.name)
            continue
        used.add(stem)
        paired.append(candidates[0])
    if ambiguous and any(stem in used for stem in ambiguous):
        names = [p.name for stem in ambiguous if stem in used for p in by_stem[stem]]
        raise DatasetOptionError(f"{input_key}: several files share a name: {_listing(names)}")
    if missing:
        expected = [filename_tmpl.format(Path(name).stem) + ".*" for name in missing]
        raise DatasetOptionError(
            f"{input_key}: no input for {len(missing)} of {len(targets)} targets in "
            f"{target_key}: {_listing(missing)} (expected {_listing(expected)})"
        )
    extra = [path.name for path in inputs if path.stem not in used]
    if extra:
        raise DatasetOptionError(
            f"{input_key}: {len(extra)} images have no target in {target_key}: {_listing(extra)}"
        )
    return paired


def _listing(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f", ... ({len(names) - _SHOWN} more)" if len(names) > _SHOWN else "")
