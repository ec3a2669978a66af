"""Tools: one-line calls on an AnnData, also registered as ``sc.tl.<name>``."""

from ._annotate import genept_annotate
from ._embed import genept_embed

__all__ = ["genept_annotate", "genept_embed"]
