"""The timed-text rules a subtitle follows, with their defaults and where those come from.

Defaults are Netflix's Timed Text Style Guides (General Requirements, and the language
guides for line length and reading speed), the most widely followed public subtitle rules:

- at most 2 lines; 42 characters a line in alphabetic scripts, 16 in Chinese and Korean,
  13 in Japanese (full-width characters; half-width ones count half);
- on screen at least 5/6 s and at most 7 s;
- reading speed at most 20 characters a second in English, 17 in other alphabetic scripts,
  12 in Korean, 9 in Chinese, 4 in Japanese; a subtitle stays on into the silence after it
  before it is ever cut shorter;
- at least 2 frames between subtitles; gaps under 12 frames are closed to those 2 frames,
  and a subtitle that ends or starts within 12 frames of a shot change (a scene cut) meets it;
- lines break after punctuation and before conjunctions and prepositions, never between an
  article and its noun, a pronoun and its verb, or a first and last name.

Every limit can be set in the screenplay's `subtitles:` section.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# language -> (characters per line, characters per second); others: ALPHABETIC
LIMITS = {"en": (42, 20.0), "ja": (13, 4.0), "zh": (16, 9.0), "yue": (16, 9.0), "ko": (16, 12.0)}
ALPHABETIC = (42, 17.0)
UNSPACED = {"ja", "zh", "yue", "th", "lo", "km", "my"}  # scripts written without spaces between words
RIGHT_TO_LEFT = {"ar", "he", "fa", "ur", "yi", "ps", "sd", "ug", "dv"}
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class Rules:
    language: str  # BCP 47, e.g. en, de-AT, ja
    max_chars: int
    max_lines: int
    max_cps: float
    min_duration: float  # seconds
    max_duration: float
    min_gap: float  # seconds (the frame count at the video's rate)
    snap: float
    captions: str = "plain"  # plain, karaoke, pop
    names: str = "first"  # first, always, never
    position: str = "bottom"  # bottom, speaker
    font: Path | None = None

    @property
    def base_language(self) -> str:
        return self.language.split("-")[0].lower()

    @property
    def spaced(self) -> bool:
        """Words are separated by spaces (lines may only break there)."""
        return self.base_language not in UNSPACED

    @property
    def right_to_left(self) -> bool:
        return self.base_language in RIGHT_TO_LEFT

    @property
    def english(self) -> bool:
        return self.base_language == "en"


def rules_for(screenplay, fps: float) -> Rules:
    """The rules for a screenplay: its `subtitles:` settings, unset limits from its language."""
    return rules_from(screenplay.subtitles.model_dump(), dialogue_language(screenplay), fps)


def rules_from(settings: dict, language: str, fps: float) -> Rules:
    """The rules from `subtitles:` settings (as a screenplay or a cues.json holds them)."""
    chars, cps = LIMITS.get(language.split("-")[0].lower(), ALPHABETIC)
    font = settings.get("font")
    return Rules(language, settings["max_chars"] or chars, settings["max_lines"], settings["max_cps"] or cps,
                 settings["min_duration"], settings["max_duration"], settings["min_gap_frames"] / fps,
                 settings["snap_frames"] / fps, settings["captions"], settings["names"], settings["position"],
                 Path(font) if font else None)


def dialogue_language(screenplay) -> str:
    """The screenplay's `language:`, else the language most of its voices speak, else English."""
    if screenplay.language:
        return screenplay.language
    spoken = [character.voice.language for character in screenplay.cast.values() if character.voice.language]
    return max(spoken, key=spoken.count) if spoken else DEFAULT_LANGUAGE


def track_language(language: str) -> str:
    """The ISO 639-2 code a container's subtitle track is tagged with (MP4 uses the terminological one)."""
    import langcodes

    try:
        return langcodes.Language.get(language).to_alpha3()
    except (LookupError, ValueError):
        return "und"


def language_problem(language: str) -> str | None:
    """Why `language` is not a language tag, or None."""
    import langcodes

    if not langcodes.tag_is_valid(language):
        return f"'{language}' is not a language tag"
    return None
