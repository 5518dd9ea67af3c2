"""Tables and the issue's goals for ``gpu_bench.py`` (imported by it; no rectifiers import)."""

from __future__ import annotations


def fmt_table(rows: list[dict], cols: list[str]) -> str:
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    widths = [max(len(c), *(len(cell(r[c])) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines.append("  ".join("-" * w for w in widths))
    for r in rows:
        lines.append("  ".join(cell(r[c]).ljust(w) for c, w in zip(cols, widths)))
    return "\n".join(lines)



def print_goals(rows, mem_rows, comp_rows, device) -> None:
    """The issue's goals, each with its worst case in this run."""
    print("\n## goals (worst case of this run)")

    def worst(rs, col):
        rs = [r for r in rs if r[col] == r[col]]  # not NaN
        return min(rs, key=lambda r: r[col]) if rs else None

    for impl in ("auto", "triton"):
        for col in ("speedup_fwdbwd", "speedup_async", "speedup_graph"):
            w = worst([r for r in rows if r["impl"] == impl], col)
            if w:
                print(f"{impl} fwd+bwd {col} >= 1.0x torch at every shape/dtype: min {w[col]:.2f} "
                      f"({w['act']} {w['shape']} {w['dtype']})")
    ew = [r for r in rows if r["impl"] == "triton" and r["act"] in ("leaky_relu", "prelu", "flexible_relu")]
    w = worst(ew, "copy_frac_graph_fwd")
    if w:
        print(f"element-wise Triton kernels >= 0.85 of copy bandwidth (graph replay, forward): worst "
              f"{w['copy_frac_graph_fwd']:.2f} ({w['act']} {w['shape']} {w['dtype']})")
    bad = [r for r in rows if r.get("graph_error")]
    print(f"CUDA-graph capture: {len(bad)} failures" + (f", e.g. {bad[0]['act']} {bad[0]['impl']}: "
                                                          f"{bad[0]['graph_error']}" if bad else ""))
    if device.type == "cuda":
        for impl in ("auto", "triton"):
            for col in ("step_speedup", "step8_speedup"):
                w = worst(mem_rows, f"{col}_{impl}")
                print(f"{impl} training step ({'batch 256' if '8' in col else 'batch 32'}) >= 1.0x: min "
                      f"{w[f'{col}_{impl}']:.2f} ({w['act']} {w['dtype']})")
            for col in ("peak_saving", "peak8_saving"):
                w = worst(mem_rows, f"{col}_{impl}")
                print(f"{impl} peak memory never above torch.nn ({col}): min saving {w[f'{col}_{impl}']:.0%} "
                      f"({w['act']} {w['dtype']})")
            lean = [r for r in mem_rows if r["act"] in ("leaky_relu", "flexible_relu", "funnel_relu")]
            w = worst(lean, f"peak8_saving_{impl}")
            if w:
                print(f"{impl} peak memory >= 15% below torch.nn at batch 256 (LeakyReLU, FReLU, Funnel): "
                      f"min {w[f'peak8_saving_{impl}']:.0%} ({w['act']} {w['dtype']})")
    if comp_rows:
        print(f"torch.compile(mode='reduce-overhead'): {sum(r['ok'] for r in comp_rows)}/{len(comp_rows)} ok")
