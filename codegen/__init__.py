"""kgen: generate Linux kernel instruction helpers from one YAML spec."""

__version__ = "0.1.0"


def cache_root():
    """kgen's cache directory: ``$XDG_CACHE_HOME/kgen``, else ``~/.cache/kgen`` (a relative
    ``XDG_CACHE_HOME`` is ignored, as the XDG Base Directory specification says)."""
    import os
    from pathlib import Path

    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kgen"
