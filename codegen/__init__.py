"""kgen: generate Linux kernel instruction helpers from one YAML spec."""

__version__ = "0.1.0"


def cache_root():
    """kgen's cache directory: ``$XDG_CACHE_HOME/kgen``, else ``~/.cache/kgen``."""
    import os
    from pathlib import Path

    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "kgen"
