"""The ``"eager"`` backend: rectifiers' own autograd, lean in memory, on any device.

LeakyReLU, PReLU and FReLU (out of place) run the C++ operators of ``csrc/operators.cpp``
(``torch.ops.rectifiers.*``, their autograd nodes in C++; :func:`rectifiers.ops.cpp.pointwise.operators`)
once the extension is built: the first call that needs a gradient builds it, on CPU or CUDA
alike. The autograd Functions below are the same computation in Python: they run where the
build is unavailable (no compiler, ``RECTIFIERS_NO_CPP=1``), in place, and for the funnel.

Modules: :mod:`.pointwise` (ReLU, LeakyReLU, PReLU, FReLU), :mod:`.funnel` (the funnel
activation) and :mod:`.compiled` (what ``torch.compile`` traces on CPU). On CPU tensors the
fused C++ kernels of :mod:`rectifiers.ops.cpp` are this backend's kernel provider (the C++ host
side, not a backend of its own); where they cannot be built the plain-torch passes give the same
results. This package imports no other backend.

What each activation keeps for backward (beyond what the next layer keeps anyway):

==============  ==========================================================================
``relu``        nothing: ``torch.relu`` already keeps its output, which gives the gradient
``leaky_relu``  slope >= 0: nothing, the output is kept (``sign(y) = sign(x)``, so
                ``aten.leaky_relu_backward(..., self_is_result=True)`` is exact); slope < 0:
                a 1-byte mask ``x > 0``
``prelu``       every slope in (0, 1]: nothing, the output is kept and ``x = y / a`` is
                recovered where ``y <= 0`` for the slope's gradient; otherwise (a slope <= 0
                or > 1, where ``y / a`` is not exact, or some ``a*x`` below the dtype's
                normal range, as float16 meets for small activations: the forward tests it)
                the input, as ``torch.nn.PReLU``; on
                CPU a fused C++ kernel (:mod:`rectifiers.ops.cpp.pointwise`) writes y in one
                pass, and dx and the slope gradient in one
``flexible_relu``  a mask ``relu(x) != 0`` (``x > 0`` or NaN; ``y > b`` is not exact
                when ``x`` is tiny against ``b``); on CPU a fused C++ kernel
                (:mod:`rectifiers.ops.cpp.pointwise`, built at first use) writes y and the mask, bit-packed (1/8 byte per element), in one pass, and
                dx and the bias gradient in one; elsewhere a 1-byte bool mask
``funnel_relu`` the input only, plus per-channel statistics: the depthwise conv and the
                BatchNorm are recomputed in backward; on CPU by a fused C++ kernel in the
                input's NCHW layout (:mod:`rectifiers.ops.cpp.funnel`), else (channels-last
                input, no compiler) in channels-last layout, where PyTorch's CPU depthwise conv is many
                times faster than in NCHW (see :mod:`.funnel`)
==============  ==========================================================================

When nothing needs a gradient (``torch.no_grad()``, or no input or parameter requires grad) the
plain fast torch kernels run directly, with no autograd Function in the way (FReLU on CPU: the
fused kernel's single pass, once it has been built). Under
``torch.compile`` / ``torch.export`` (and ``torch.func`` transforms) :mod:`rectifiers.ops` runs
the plain formulas of the ``"torch"`` backend instead (the compiler fuses them and picks what to
keep; no data-dependent branch breaks the graph), except for ReLU, LeakyReLU and FReLU on CPU
under ``torch.compile`` with a gradient needed: there the compiler's own choice (a bool mask) is
many times slower, and :mod:`.compiled` says what to keep.

Double backward (``create_graph=True``) works: every backward below is written with
differentiable operations, or recomputes through the plain formula when a graph is asked for.
"""

from __future__ import annotations

from .funnel import funnel_relu
from .pointwise import flexible_relu, leaky_relu, prelu, relu

__all__ = ["relu", "leaky_relu", "prelu", "flexible_relu", "funnel_relu"]


