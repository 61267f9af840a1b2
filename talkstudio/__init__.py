"""talkstudio: turn a written dialogue into a talking video."""

__version__ = "0.3.0"  # 0.3: subtitles by timed-text rules; older renders are redone
