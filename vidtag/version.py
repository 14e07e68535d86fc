"""The version vidtag reports (`vidtag --version`, XMP CreatorTool); a leaf, so any module may read it."""

__version__ = "0.1.0"
