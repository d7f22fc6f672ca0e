"""kgen: generate Linux kernel instruction helpers from one YAML spec."""

__version__ = "0.1.0"
