"""talkstudio: turn a written dialogue into a talking video."""

__version__ = "0.2.0"  # 0.2: a new puppet picture, stage framing and sealed cache; older renders are redone
