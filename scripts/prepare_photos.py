"""Split ../shared/data/photos into the training and validation folders the configs expect.

    python scripts/prepare_photos.py [PHOTOS_DIR] [--out datasets/photos] [--held-out 6]
                                     [--extra datasets/extra_photos]

Makes ``OUT/train`` and ``OUT/val`` of symbolic links (nothing is copied): the last
``--held-out`` photos by name go to ``val`` and are never trained on. ``--extra`` adds a
folder's photos (``scripts/fetch_extra_photos.py`` makes one) to ``train`` only.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path, nargs="?", default=Path("../shared/data/photos"))
    parser.add_argument("--out", type=Path, default=Path("datasets/photos"))
    parser.add_argument("--held-out", type=int, default=6)
    parser.add_argument("--extra", type=Path, help="more training photos (never validation)")
    args = parser.parse_args()
    photos = sorted(args.photos.resolve().glob("*.png"))
    if len(photos) <= args.held_out:
        raise SystemExit(f"{args.photos}: only {len(photos)} photos")
    split = {"train": photos[: -args.held_out], "val": photos[-args.held_out :]}
    if args.extra is not None:
        extra = sorted(args.extra.resolve().glob("*.png"))
        if not extra:
            raise SystemExit(f"{args.extra}: no .png photos (run scripts/fetch_extra_photos.py)")
        clashes = {p.name for p in extra} & {p.name for p in photos}
        if clashes:
            raise SystemExit(f"{args.extra}: names already in {args.photos}: {sorted(clashes)}")
        split["train"] += extra
    for name, files in split.items():
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            if old.is_symlink():
                old.unlink()
        for photo in files:
            (folder / photo.name).symlink_to(photo)
        print(f"{folder}: {len(files)} photos")


if __name__ == "__main__":
    main()
