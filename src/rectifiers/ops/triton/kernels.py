"""The Triton kernels behind :mod:`rectifiers.ops.triton` (imported on first launch).

Comparisons are made in fp32 (fp64 for fp64 tensors) after an exact up-cast, and per-channel
parameters arrive already cast to the input's dtype: both keep the interpreter, whose bf16
support is partial, in step with the compiled kernels.

Every kernel sees its tensors as flat arrays in *memory order*: the caller hands it a dense
(non-overlapping, gap-free) tensor, so element ``k`` of the storage is at offset ``k`` from the
data pointer, whatever the logical shape, strides or memory format. For a dense tensor the
strides form a mixed-radix system, so the channel of the element at offset ``k`` is
``(k // INNER) % C`` where ``INNER`` is the stride of the channel dim and ``C`` its size, and the
elements of channel ``c`` sit at ``o * C * INNER + c * INNER + i`` for ``o < OUTER``,
``i < INNER``: the (outer, C, inner) view the per-channel reductions walk.

Kinds (the ``KIND`` constexpr):

* 0 relu: ``y = 0 if x < 0 else x``, NaN kept, as ``torch.relu``; ``relu(-0.0)`` is
  ``-0.0`` as torch's CPU kernel gives in the interpreter and ``+0.0`` as its CUDA kernel gives
  on a GPU (the ``NEG_ZERO`` constexpr); mask bit ``not (x <= 0)`` (``torch``'s
  ``threshold_backward`` passes the gradient at NaN).
* 1 leaky: ``y = x if x > 0 else a*x``; mask bit ``x > 0``.
* 2 prelu: as leaky with ``a = w[c]`` (cast to the input's dtype first, as torch does).
* 3 frelu: ``y = relu(x) + b[c]``; mask bit as relu.

Masks are bit-packed: 32 elements per int32 word, bit ``k % 32`` of word ``k // 32`` (memory
order). The funnel kernels keep 2 bits per element (16 per word), see ``funnel_fwd``.

Each kernel is kept as a plain function and wrapped twice: as a compiled ``JITFunction`` for GPU
tensors and as Triton's interpreter for CPU tensors (``TRITON_INTERPRET=1``), so the choice is
made per launch from the tensor's device and not by the environment at import time.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

# Sums go through ``tl.reduce`` with the standard library's combine function rather than
# ``tl.sum``: ``tl.sum`` is itself a jit function, compiled or interpreted depending on
# TRITON_INTERPRET when triton was first imported, while the interpreter recognises this combine
# function by identity either way (and runs it as a numpy sum).
_sum_combine = tl.standard._sum_combine


def act_fwd(
    X, Y, M, W, N, C, INNER, slope,
    KIND: tl.constexpr, PER_CHANNEL: tl.constexpr, WIDE: tl.constexpr, WRITE_MASK: tl.constexpr,
    FP64: tl.constexpr, NEG_ZERO: tl.constexpr, BLOCK: tl.constexpr,
):
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    x = tl.load(X + offs, mask=valid, other=0.0)
    if FP64:
        xf = x.to(tl.float64)
    else:
        xf = x.to(tl.float32)
    # relu(-0.0): torch's CPU kernel gives -0.0, its CUDA kernel +0.0; NEG_ZERO picks the
    # CPU's (set for the interpreter, which runs on CPU tensors).
    if NEG_ZERO:
        r = tl.where(xf < 0, 0.0, xf)
    else:
        r = tl.where(xf > 0, xf, tl.where(xf != xf, xf, 0.0))
    if KIND == 0:
        y = r.to(x.dtype)
        bit = (xf > 0) | (xf != xf)
    elif KIND == 1:
        y = tl.where(xf > 0, xf, xf * slope).to(x.dtype)
        bit = xf > 0
    else:
        if PER_CHANNEL:
            # The channel of offset k is (k // INNER) % C. One 64-bit division per program,
            # then 32-bit work per element: with WIDE (INNER >= BLOCK) a block crosses at most
            # one channel boundary, so a comparison replaces the division.
            base = pid * BLOCK
            r0 = base % INNER
            c0 = ((base // INNER) % C).to(tl.int32)
            if WIDE:
                # two scalar loads and a select instead of a gather
                c1 = tl.where(c0 + 1 >= C, 0, c0 + 1)
                p = tl.where(r0 + tl.arange(0, BLOCK) >= INNER, tl.load(W + c1), tl.load(W + c0))
            else:
                local = r0.to(tl.int32) + tl.arange(0, BLOCK)  # INNER < BLOCK here
                c = (c0 + local // tl.cast(INNER, tl.int32)) % C
                p = tl.load(W + c, mask=valid, other=0.0)
        else:
            p = tl.load(W)
        # The caller hands the parameter already cast to the input's dtype (as torch's
        # ``weight.to(x.dtype)``).
        p = p.to(xf.dtype)
        if KIND == 2:
            y = tl.where(xf > 0, xf, p * xf).to(x.dtype)
            bit = xf > 0
        else:
            y = (r + p).to(x.dtype)
            bit = (xf > 0) | (xf != xf)
    tl.store(Y + offs, y, mask=valid)
    if WRITE_MASK:
        WORDS: tl.constexpr = BLOCK // 32
        bits = tl.reshape(bit.to(tl.int32), (WORDS, 32))
        shifts = tl.arange(0, 32)
        words = tl.reduce(bits << shifts[None, :], 1, _sum_combine)
        widx = pid * WORDS + tl.arange(0, WORDS)
        tl.store(M + widx, words, mask=widx < (N + 31) // 32)


def act_bwd_flat(
    G, M, W, S, DX, PART, N, slope,
    KIND: tl.constexpr, SAVED_IS_X: tl.constexpr, NEED_WGRAD: tl.constexpr,
    FP64: tl.constexpr, BLOCK: tl.constexpr,
):
    """dx for every kind with a scalar parameter (or none); one partial parameter-gradient sum
    per program into ``PART[pid]``."""
    pid = tl.program_id(0).to(tl.int64)
    WORDS: tl.constexpr = BLOCK // 32
    widx = pid * WORDS + tl.arange(0, WORDS)
    words = tl.load(M + widx, mask=widx < (N + 31) // 32, other=0)
    shifts = tl.arange(0, 32)
    bitv = tl.reshape((words[:, None] >> shifts[None, :]) & 1, (BLOCK,))
    bit = bitv != 0
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    g0 = tl.load(G + offs, mask=valid, other=0.0)
    if FP64:
        g = g0.to(tl.float64)
    else:
        g = g0.to(tl.float32)
    if KIND == 0:
        dx = tl.where(bit, g, 0.0)
    elif KIND == 1:
        dx = tl.where(bit, g, g * slope)
    elif KIND == 2:
        a = tl.load(W).to(g.dtype)
        dx = tl.where(bit, g, a * g)
    else:
        dx = tl.where(bit, g, 0.0)
    tl.store(DX + offs, dx.to(g0.dtype), mask=valid)
    if NEED_WGRAD:
        if KIND == 2:
            s = tl.load(S + offs, mask=valid, other=0.0).to(g.dtype)
            if SAVED_IS_X:
                xn = s
            else:
                # y = a*x where x <= 0, and a is finite and non-zero here (else x is saved).
                xn = s / a
            contrib = tl.where(valid & (bitv == 0), g * xn, 0.0)
        else:
            contrib = g
        if FP64:
            acc = tl.reduce(contrib.to(tl.float64), 0, _sum_combine)
        else:
            acc = tl.reduce(contrib.to(tl.float32), 0, _sum_combine)
        tl.store(PART + pid, acc)


def act_bwd_tiled(
    G, M, W, S, DX, PART, C, INNER, OUTER, NIB, NOB, SPLIT,
    KIND: tl.constexpr, SAVED_IS_X: tl.constexpr, NEED_WGRAD: tl.constexpr,
    FP64: tl.constexpr, BO: tl.constexpr, BC: tl.constexpr, BI: tl.constexpr,
):
    """dx and per-channel parameter gradients (prelu, frelu) over the (outer, C, inner) view.

    Program (cb * NIB + ib, s) owns channels ``cb*BC ..`` and inner positions ``ib*BI ..`` and
    walks the outer blocks ``s, s + SPLIT, ...``; it writes one partial sum per channel to
    ``PART[(s * NIB + ib) * C + c]``, summed afterwards in a fixed order (deterministic).
    """
    pid = tl.program_id(0)
    s = tl.program_id(1)
    cb = pid // NIB
    ib = pid % NIB
    c = cb * BC + tl.arange(0, BC)
    i = ib * BI + tl.arange(0, BI)
    cmask = c < C
    ci_off = c[None, :, None].to(tl.int64) * INNER + i[None, None, :]
    ci_valid = cmask[None, :, None] & (i < INNER)[None, None, :]
    p = tl.load(W + c, mask=cmask, other=1.0)
    if FP64:
        acc = tl.full((BO, BC, BI), 0.0, tl.float64)
    else:
        acc = tl.full((BO, BC, BI), 0.0, tl.float32)
    for ob in range(s, NOB, SPLIT):
        o = ob * BO + tl.arange(0, BO)
        offs = o[:, None, None].to(tl.int64) * C * INNER + ci_off
        valid = (o < OUTER)[:, None, None] & ci_valid
        g0 = tl.load(G + offs, mask=valid, other=0.0)
        if FP64:
            g = g0.to(tl.float64)
        else:
            g = g0.to(tl.float32)
        words = tl.load(M + offs // 32, mask=valid, other=0)
        bitv = (words >> (offs % 32).to(tl.int32)) & 1
        bit = bitv != 0
        if KIND == 2:
            a = p.to(g.dtype)[None, :, None]
            dx = tl.where(bit, g, a * g)
        else:
            dx = tl.where(bit, g, 0.0)
        tl.store(DX + offs, dx.to(g0.dtype), mask=valid)
        if NEED_WGRAD:
            if KIND == 2:
                sv = tl.load(S + offs, mask=valid, other=0.0).to(g.dtype)
                if SAVED_IS_X:
                    xn = sv
                else:
                    xn = sv / a
                acc += tl.where(valid & (bitv == 0), g * xn, 0.0)
            else:
                acc += g
    if NEED_WGRAD:
        part = tl.reduce(tl.reduce(acc, 2, _sum_combine), 0, _sum_combine)
        tl.store(PART + (s * NIB + ib) * C + c, part, mask=cmask)


def funnel_fwd(
    X, T, Y, M, MEAN, VAR, W, B, N, C, INNER, eps,
    HAS_W: tl.constexpr, HAS_B: tl.constexpr,
    WIDE: tl.constexpr, WRITE_MASK: tl.constexpr, BLOCK: tl.constexpr,
):
    """``y = max(x, (t - mean[c]) * scale[c] + b[c])`` (BatchNorm applied with fixed
    per-channel statistics, ``scale = w / sqrt(var + eps)``, both made here from the fp32
    statistics and the parameters in their own dtype), with a 2-bit code per element for
    backward: 0 x won, 1 T won, 2 tie (the gradient splits), 3 unordered (NaN: both get the
    gradient, as ``torch.maximum``'s backward). 16 codes per int32 word, memory order."""
    pid = tl.program_id(0).to(tl.int64)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    valid = offs < N
    base = pid * BLOCK  # the channel as in act_fwd
    r0 = base % INNER
    c0 = ((base // INNER) % C).to(tl.int32)
    if WIDE:
        c = c0 + (r0 + tl.arange(0, BLOCK) >= INNER).to(tl.int32)
        c = tl.where(c >= C, c - C, c)
    else:
        local = r0.to(tl.int32) + tl.arange(0, BLOCK)  # INNER < BLOCK here
        c = (c0 + local // tl.cast(INNER, tl.int32)) % C
    x0 = tl.load(X + offs, mask=valid, other=0.0)
    x = x0.to(tl.float32)
    t = tl.load(T + offs, mask=valid, other=0.0).to(tl.float32)
    mu = tl.load(MEAN + c, mask=valid, other=0.0)
    # 1 / sqrt(var + eps), each step rounded to nearest (as torch's rsqrt on CPU)
    sc = tl.math.div_rn(1.0, tl.sqrt_rn(tl.load(VAR + c, mask=valid, other=1.0) + eps))
    if HAS_W:
        sc = sc * tl.load(W + c, mask=valid, other=0.0).to(tl.float32)
    if HAS_B:
        bb = tl.load(B + c, mask=valid, other=0.0).to(tl.float32)
    else:
        bb = 0.0
    # T is rounded to the input's dtype before the max, as BatchNorm's output would be.
    tt = ((t - mu) * sc + bb).to(x0.dtype).to(tl.float32)
    gt = x > tt
    lt = x < tt
    eq = x == tt
    y = tl.where(lt, tt, tl.where(gt | eq, x, x + tt))
    tl.store(Y + offs, y.to(x0.dtype), mask=valid)
    if WRITE_MASK:
        code = tl.where(gt, 0, tl.where(lt, 1, tl.where(eq, 2, 3))).to(tl.int32)
        WORDS: tl.constexpr = BLOCK // 16
        codes = tl.reshape(code, (WORDS, 16))
        shifts = 2 * tl.arange(0, 16)
        words = tl.reduce(codes << shifts[None, :], 1, _sum_combine)
        widx = pid * WORDS + tl.arange(0, WORDS)
        tl.store(M + widx, words, mask=widx < (N + 15) // 16)


def funnel_bwd(
    G, M, T, MEAN, VAR, W, SUMS, OUT, PART,
    C, INNER, OUTER, NIB, NOB, SPLIT, eps, count,
    PHASE: tl.constexpr, BATCH: tl.constexpr, HAS_W: tl.constexpr,
    BO: tl.constexpr, BC: tl.constexpr, BI: tl.constexpr,
):
    """Funnel backward over the (outer, C, inner) view, in two phases of the same walk.

    The incoming gradient is split by the 2-bit codes into ``gx`` (to x) and ``gt`` (to T):
    x won (g, 0); T won (0, g); tie (g/2, g/2); NaN (g, g), as ``torch.maximum``'s backward.
    ``that = (t - mean) * invstd`` is rebuilt from the recomputed conv output ``t``, with
    ``invstd = 1 / sqrt(var + eps)`` and ``scale = invstd * w`` made here per channel.

    PHASE 0 writes ``gx`` to OUT and per-channel partial sums of ``gt`` and ``gt * that``
    (BatchNorm's bias and weight gradients) to ``PART[0]`` and ``PART[1]`` (each SPLIT * NIB
    rows of C). PHASE 1 writes BatchNorm's input gradient to OUT:
    ``scale * (gt - k1 - that * k2)`` with batch statistics (BATCH), ``k1, k2 = SUMS[0][c],
    SUMS[1][c]`` divided by ``count`` (the values per channel); else ``scale * gt`` (fixed
    statistics: ``that`` does not enter, so a NaN there stays out).
    """
    pid = tl.program_id(0)
    s = tl.program_id(1)
    cb = pid // NIB
    ib = pid % NIB
    c = cb * BC + tl.arange(0, BC)
    i = ib * BI + tl.arange(0, BI)
    cmask = c < C
    ci_off = c[None, :, None].to(tl.int64) * INNER + i[None, None, :]
    ci_valid = cmask[None, :, None] & (i < INNER)[None, None, :]
    mu = tl.load(MEAN + c, mask=cmask, other=0.0)[None, :, None]
    inv1 = tl.math.div_rn(1.0, tl.sqrt_rn(tl.load(VAR + c, mask=cmask, other=1.0) + eps))
    inv = inv1[None, :, None]
    if PHASE == 1:
        if HAS_W:
            sc = (inv1 * tl.load(W + c, mask=cmask, other=0.0).to(tl.float32))[None, :, None]
        else:
            sc = inv
        if BATCH:
            k1 = tl.math.div_rn(tl.load(SUMS + c, mask=cmask, other=0.0), count)[None, :, None]
            k2 = tl.math.div_rn(tl.load(SUMS + C + c, mask=cmask, other=0.0), count)[None, :, None]
    acc1 = tl.full((BO, BC, BI), 0.0, tl.float32)
    acc2 = tl.full((BO, BC, BI), 0.0, tl.float32)
    for ob in range(s, NOB, SPLIT):
        o = ob * BO + tl.arange(0, BO)
        offs = o[:, None, None].to(tl.int64) * C * INNER + ci_off
        valid = (o < OUTER)[:, None, None] & ci_valid
        g0 = tl.load(G + offs, mask=valid, other=0.0)
        g = g0.to(tl.float32)
        words = tl.load(M + offs // 16, mask=valid, other=0)
        code = (words >> (2 * (offs % 16)).to(tl.int32)) & 3
        half = g * 0.5
        gt = tl.where(code == 0, 0.0, tl.where(code == 1, g, tl.where(code == 2, half, g)))
        t = tl.load(T + offs, mask=valid, other=0.0).to(tl.float32)
        that = (t - mu) * inv
        if PHASE == 0:
            gx = tl.where(code == 0, g, tl.where(code == 1, 0.0, tl.where(code == 2, half, g)))
            tl.store(OUT + offs, gx.to(g0.dtype), mask=valid)
            acc1 += tl.where(valid, gt, 0.0)
            acc2 += tl.where(valid, gt * that, 0.0)
        else:
            if BATCH:
                dt = sc * (gt - k1 - that * k2)
            else:
                dt = sc * gt
            tl.store(OUT + offs, dt.to(g0.dtype), mask=valid)
    if PHASE == 0:
        part = (s * NIB + ib) * C + c
        rows = SPLIT * NIB
        tl.store(PART + part, tl.reduce(tl.reduce(acc1, 2, _sum_combine), 0, _sum_combine), mask=cmask)
        tl.store(PART + rows * C + part, tl.reduce(tl.reduce(acc2, 2, _sum_combine), 0, _sum_combine),
                 mask=cmask)


_RAW = {
    "act_fwd": act_fwd,
    "act_bwd_flat": act_bwd_flat,
    "act_bwd_tiled": act_bwd_tiled,
    "funnel_fwd": funnel_fwd,
    "funnel_bwd": funnel_bwd,
}
_JIT: dict = {}
_INTERP: dict = {}
_LAUNCH: dict = {}

#: Launch compiled kernels through :class:`PreBound` (False: Triton's generic dispatch, always).
PREBOUND = True


def kernel(name: str, device_type: str):
    """The kernel ``name`` compiled for the GPU, or interpreted for CPU tensors."""
    if device_type == "cpu":
        k = _INTERP.get(name)
        if k is None:
            from triton.runtime.interpreter import InterpretedFunction

            k = _INTERP[name] = InterpretedFunction(_RAW[name])
        return k
    k = _JIT.get(name)
    if k is None:
        from triton.runtime.jit import JITFunction

        k = _JIT[name] = JITFunction(_RAW[name])
    return k


def launcher(name: str, device_type: str):
    """``launch(grid, *args, **meta)`` for kernel ``name`` on tensors of ``device_type``:
    :class:`PreBound` for compiled kernels (when :data:`PREBOUND`), else Triton's own
    ``kernel[grid](*args, **meta)`` (the interpreter, for CPU tensors, has only that)."""
    key = (name, device_type, PREBOUND)
    fn = _LAUNCH.get(key)
    if fn is None:
        k = kernel(name, device_type)
        fn = _LAUNCH[key] = PreBound(k) if (device_type != "cpu" and PREBOUND) else generic(k)
    return fn


def generic(k):
    """Triton's generic dispatch: bind, specialise, look up the cache, launch."""
    def launch(grid, *args, **meta):
        k[grid](*args, **meta)
    return launch


def _spec(a):
    """What Triton specialises a kernel argument on, or finer: a tensor's dtype and 16-byte
    alignment; an int's being 1, its divisibility by 16 and whether it fits 32 bits; a bool's
    value; a float's type."""
    if isinstance(a, torch.Tensor):
        return (a.dtype, a.data_ptr() % 16 == 0)
    if isinstance(a, bool) or a is None:
        return a
    if isinstance(a, int):
        return (a == 1, a % 16 == 0, -(2**31) <= a < 2**31)
    return type(a)


def _hooked(hook) -> bool:
    """Whether a launch hook is set: a callable, or (newer Triton) a non-empty chain."""
    calls = getattr(hook, "calls", None)
    return bool(calls) if isinstance(calls, list) else hook is not None


class PreBound:
    """Launches of one compiled kernel without Triton's generic dispatch.

    The first launch of each specialisation goes through ``JITFunction.run`` (which compiles
    and launches); the compiled kernel it returns is kept under a key at least as fine as
    Triton's own specialisation (:func:`_spec` of every argument, the constexprs, the options
    and the device), and later launches with that key call its launcher directly: no binding
    of arguments by name, no cache-key string, no launch-metadata dictionary. Launch hooks
    (``knobs.runtime.launch_enter_hook``, set by profilers) are honoured only at the first
    launch of a specialisation: a kernel whose first launch saw one always goes the generic way.
    If the installed Triton's compiled kernels do not have the expected launcher (another
    version), every launch goes the generic way.
    """

    def __init__(self, jit) -> None:
        self.jit = jit
        self.cache: dict = {}

    def __call__(self, grid, *args, **meta) -> None:
        dev = torch.cuda.current_device()
        key = (dev, tuple(map(_spec, args)), tuple(meta.items()))
        entry = self.cache.get(key)
        if entry is None:
            compiled = self.jit.run(*args, grid=grid, warmup=False, **meta)
            self.cache[key] = self._bind(compiled, args, meta)
            return
        if entry is False:
            self.jit[grid](*args, **meta)
            return
        run, function, packed, tail = entry
        g1 = grid[1] if len(grid) > 1 else 1
        g2 = grid[2] if len(grid) > 2 else 1
        run(grid[0], g1, g2, torch._C._cuda_getCurrentRawStream(dev), function, packed,
            None, None, None, *args, *tail)

    def _bind(self, compiled, args, meta):
        """``(launcher, function, packed metadata, constexpr values)`` of ``compiled``, or False
        where this Triton cannot be launched that way."""
        from triton import knobs

        try:
            if _hooked(knobs.runtime.launch_enter_hook) or _hooked(knobs.runtime.launch_exit_hook):
                return False
            run, function, packed = compiled.run, compiled.function, compiled.packed_metadata
            names = list(self.jit.arg_names)
            sig = compiled.src.signature
        except AttributeError:
            return False
        rest = names[len(args):]
        if any(n not in meta for n in rest) or not isinstance(sig, dict):
            return False
        if len(sig) == len(names):  # the launcher takes every parameter, constexprs included
            tail = tuple(meta[n] for n in rest)
        elif len(sig) == len(args):  # older Triton: the non-constexpr ones only
            tail = ()
        else:
            return False
        return run, function, packed, tail
