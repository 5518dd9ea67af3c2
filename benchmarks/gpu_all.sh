#!/usr/bin/env bash
# The whole GPU session in one command (what `device` runs on a lent CUDA machine; installs
# nothing; about 5 minutes on an H200): correctness of every backend on the device, the host
# cost per call, then the benchmark (synchronous, asynchronous and CUDA-graph timings, the size
# sweep and the re-derived thresholds of backend="auto", training steps at batch 32 and 256 with
# peak memory, torch.compile(mode="reduce-overhead")). Logs and CSVs go to $OUT (default
# benchmarks/results). Usage, from the repository root:
#     bash benchmarks/gpu_all.sh
set -u
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
out="${OUT:-benchmarks/results}"
mkdir -p "$out"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee "$out/gpu-env.txt"
python3 -c "import torch, triton, sys; print('python', sys.version.split()[0], 'torch', torch.__version__, 'triton', triton.__version__)" 2>&1 | tee -a "$out/gpu-env.txt"
git rev-parse --short HEAD 2>/dev/null | sed 's/^/commit /' | tee -a "$out/gpu-env.txt"
start=$SECONDS
timeout 240 python3 benchmarks/gpu_check.py --out "$out" > "$out/gpu-check.log" 2>&1
echo "gpu_check: exit $? after $((SECONDS - start)) s"; tail -n 30 "$out/gpu-check.log"
timeout 60 python3 benchmarks/gpu_overhead.py > "$out/gpu-overhead.log" 2>&1
echo "gpu_overhead: exit $?"; head -n 20 "$out/gpu-overhead.log"
start=$SECONDS
timeout 330 python3 benchmarks/gpu_bench.py --out "$out" > "$out/gpu-bench.log" 2>&1
echo "gpu_bench: exit $? after $((SECONDS - start)) s"; cat "$out/gpu-bench.log"
