"""Hooks into other libraries (each imported only when asked for): :mod:`.timm`."""
