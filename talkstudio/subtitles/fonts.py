"""Fonts for burned subtitles: one that has every character the subtitles use.

libass draws with the font the ASS style names; a font without the script's characters draws
empty boxes, silently. So the font is chosen by its character map (read with fontTools) among
the fonts this machine has (fontconfig's list, else the usual folders, and matplotlib's DejaVu
when installed), or given in the screenplay (`subtitles: {font: FILE}`), before any rendering.
"""

from __future__ import annotations

import shutil
import subprocess
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from talkstudio.errors import InputError, Problem

FONT_SUFFIXES = {".ttf", ".otf", ".ttc", ".otc"}
FONT_FOLDERS = [Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".local/share/fonts",
                Path.home() / ".fonts", Path("/Library/Fonts"), Path("/System/Library/Fonts"),
                Path("C:/Windows/Fonts")]
PREFERRED = ("DejaVu Sans", "Noto Sans", "Liberation Sans", "Arial")  # tried first, in this order
# a few characters of each script, for `doctor`
SCRIPT_SAMPLES = {
    "Latin": "Aaéßœ", "Greek": "ΩλΣ", "Cyrillic": "ЖдЯ", "Arabic (right to left)": "عربي",
    "Hebrew (right to left)": "עברית", "Devanagari": "हिन्दी", "Thai": "ภาษาไทย",
    "Chinese": "汉字漢字", "Japanese": "かなカナ漢字", "Korean": "한국어",
}


@dataclass(frozen=True)
class Font:
    path: Path
    family: str


def burn_font(text: str, given: Path | None = None) -> Font:
    """The font to burn `text` with: the given one, else the machine's font that has most of its
    characters (libass takes any others from the machine's other fonts). InputError naming the
    characters no font has, before anything is rendered."""
    needed = _needed(text)
    candidates = ([given] if given is not None else []) + list(machine_fonts())
    missing = needed - _union(tuple(candidates))
    if missing:
        raise InputError(Problem(f"no font {'given or ' if given else ''}on this machine has {_describe(missing)} "
                                 "for the burned subtitles", field="--burn-subtitles",
                                 hint="install a font for the script (e.g. Debian: apt-get install fonts-noto-cjk "
                                      "for Chinese, Japanese and Korean; fonts-noto-core for others), give one with "
                                      "`subtitles: {font: FILE}`, or leave out --burn-subtitles (the sidecar files "
                                      "use the player's fonts); `talkstudio doctor` lists the scripts that can be burned"))
    primary = given if given is not None else max(candidates, key=lambda p: len(needed & _characters(str(p))))
    return Font(primary, _family(str(primary)))


def font_folders(font: Font) -> list[Path]:
    """The folders libass is to search: the chosen font's first, then every folder with a machine font."""
    return list(dict.fromkeys([font.path.parent] + [p.parent for p in machine_fonts()]))


def burnable_scripts() -> dict[str, bool]:
    """For `doctor`: which scripts some font on this machine can draw."""
    every = _union(machine_fonts())
    return {script: set(map(ord, sample)) <= every for script, sample in SCRIPT_SAMPLES.items()}


@lru_cache(maxsize=1)
def machine_fonts() -> tuple[Path, ...]:
    """Font files on this machine, the preferred families first."""
    found = _fontconfig_fonts() or [p for folder in FONT_FOLDERS if folder.is_dir() for p in folder.rglob("*")
                                    if p.suffix.lower() in FONT_SUFFIXES]
    found += _matplotlib_fonts()
    # Last Resort fonts map every character to a placeholder box: exactly what is to be avoided
    unique = list(dict.fromkeys(p for p in found if p.is_file() and "lastresort" not in p.name.lower()))

    def rank(path: Path) -> tuple:
        family = _family(str(path))
        order = PREFERRED.index(family) if family in PREFERRED else len(PREFERRED)
        regular = "Bold" not in path.stem and "Italic" not in path.stem and "Oblique" not in path.stem
        return order, not regular, path.name

    return tuple(sorted(unique, key=rank))


def _fontconfig_fonts() -> list[Path]:
    if shutil.which("fc-list") is None:
        return []
    try:
        listed = subprocess.run(["fc-list", "--format", "%{file}\\n"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [Path(line) for line in listed.stdout.splitlines() if Path(line).suffix.lower() in FONT_SUFFIXES]


def _matplotlib_fonts() -> list[Path]:
    try:
        import matplotlib
    except ImportError:
        return []
    return sorted((Path(matplotlib.__file__).parent / "mpl-data" / "fonts" / "ttf").glob("*.ttf"))


def _characters(path: str) -> frozenset[int]:
    return _read(path)[1]


def _family(path: str) -> str:
    return _read(path)[0]


@lru_cache(maxsize=256)
def _read(path: str) -> tuple[str, frozenset[int]]:
    """A font file's family name and the characters it has (one read of its name and cmap tables);
    an unreadable file has no characters."""
    from fontTools.ttLib import TTFont, TTLibError

    broken = (TTLibError, OSError, ValueError, AssertionError, KeyError)
    family, characters = Path(path).stem, frozenset()
    try:
        with TTFont(path, fontNumber=0, lazy=True) as font:
            try:
                family = str(font["name"].getBestFamilyName() or family)
            except broken:
                pass  # a damaged name table: the file's name stands in
            characters = frozenset(font.getBestCmap() or {})
    except broken:
        pass
    return family, characters


def _union(paths: tuple[Path, ...]) -> frozenset[int]:
    every: set[int] = set()
    for path in paths:
        every |= _characters(str(path))
    return frozenset(every)


def _needed(text: str) -> set[int]:
    """The characters that need a glyph: not spaces, controls or joiners (shaping handles those)."""
    return {ord(c) for c in text if not c.isspace() and unicodedata.category(c) not in ("Cc", "Cf")}


def _describe(missing: set[int]) -> str:
    sample = "".join(chr(c) for c in sorted(missing)[:8])
    scripts = sorted({unicodedata.name(chr(c), "UNKNOWN").split()[0].title() for c in missing})
    return f"{len(missing)} character{'s' * (len(missing) > 1)} ({', '.join(scripts[:4])}: {sample})"
