"""The C++ host side: the Python that builds, loads and calls the C++ CPU kernels.

Not a backend of its own: it is the **kernel provider of the eager backend**
(:mod:`rectifiers.ops.eager`), which calls it on CPU tensors and keeps its plain-torch path where
the kernels cannot be built. It imports no backend.

The kernels are C++ source files shipped with the package (``rectifiers/csrc``: ``common.h``,
``frelu.h``, ``prelu.h``, ``pointwise.cpp``, ``funnel.cpp``), compiled at first use with
:func:`torch.utils.cpp_extension.load`:

* :mod:`.pointwise`: FReLU's and PReLU's fused passes (op namespace ``rectifiers_cpp``);
* :mod:`.funnel`: the funnel activation's fused training step (``rectifiers_funnel_cpp``);
* :mod:`.build`: the build, the lazy load with its one-time warning, ``RECTIFIERS_NO_CPP``, and
  :func:`set_isa`, the instruction-set cap of every extension.
"""

from __future__ import annotations

from .build import disabled, set_isa

__all__ = ["disabled", "set_isa"]
