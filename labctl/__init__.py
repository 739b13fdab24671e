"""labctl: instrument control, protocol engine and SQL recording for solid-state battery labs."""

__version__ = "0.1.0"
