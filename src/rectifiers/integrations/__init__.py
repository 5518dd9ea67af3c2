"""Hooks into other libraries (each imported only when asked for): :mod:`.timm`,
:mod:`.tensorboard` (the ``tensorboard`` extra) and :mod:`.lightning` (the ``lightning`` extra)."""
