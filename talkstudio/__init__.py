"""talkstudio: turn a written dialogue into a talking video."""

__version__ = "0.1.0"
