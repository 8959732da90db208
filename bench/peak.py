"""This machine's matmul peak: fp32 and bf16 GFLOP/s with the threads training uses (the bar for bench/throughput.py).

    .venv/bin/python bench/peak.py [--seconds 3]

Two shapes per precision: a square 2048 x 2048 product and a model-shaped one (a batch of 960 tokens through
MiniLM's 384 -> 1536 feed-forward layer, the largest matmul of a training step). The peak is the best of the two.
On a CPU without native bf16 (no avx512_bf16 / amx_bf16 flag) the bf16 figure is low: training uses fp32 there.
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tasks.runtime import env  # noqa: E402

env.apply()

import torch  # noqa: E402

from task_types.inference import cpu_has_fast_bf16  # noqa: E402

SHAPES = {"square 2048": (2048, 2048, 2048), "model 960x384@384x1536": (960, 384, 1536)}


def matmul_gflops(m: int, k: int, n: int, dtype: torch.dtype, seconds: float = 3.0) -> float:
    """Best-of-repeats GFLOP/s of an (m x k) @ (k x n) product in dtype on the CPU."""
    a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
    for _ in range(3):  # warm the kernels and the caches
        a @ b
    best, deadline = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        for _ in range(5):
            a @ b
        best = max(best, 5 * 2 * m * k * n / (time.perf_counter() - started) / 1e9)
    return best


def peak(seconds: float = 3.0) -> dict:
    """{"fp32": GFLOP/s, "bf16": GFLOP/s, "threads": n, "shapes": {...}} on this machine, now."""
    shapes = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        shapes[precision] = {name: round(matmul_gflops(*shape, dtype, seconds), 1) for name, shape in SHAPES.items()}
    return {
        "threads": torch.get_num_threads(),
        "native_bf16": cpu_has_fast_bf16(),
        "fp32": max(shapes["fp32"].values()),
        "bf16": max(shapes["bf16"].values()),
        "shapes": shapes,
    }


def gpu_matmul_tflops(n: int = 8192, dtype: torch.dtype = torch.bfloat16, repeats: int = 20) -> float:
    """Median TFLOP/s of an n x n x n product on the current GPU (random data, CUDA events, after warm-up)."""
    a, b = torch.randn(n, n, device="cuda", dtype=dtype), torch.randn(n, n, device="cuda", dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return 2 * n**3 / times[len(times) // 2] / 1e12


def gpu_peak() -> dict:
    """{"bf16": GFLOP/s, "fp32": GFLOP/s (tf32 matmuls, as training sets them), "name": ...} of the current GPU, now."""
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        fp32 = gpu_matmul_tflops(dtype=torch.float32)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32
    return {"name": torch.cuda.get_device_name(), "bf16": round(gpu_matmul_tflops() * 1e3, 1), "fp32": round(fp32 * 1e3, 1)}


def cpu_flags() -> str:
    """The CPU's model name and its flags that decide the peak (avx2, avx512f, avx512_bf16, amx_*)."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown CPU"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "unknown CPU")
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    wanted = ["avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"]
    return f"{model}; {' '.join(f for f in wanted if f in flags) or 'no avx2/avx512/amx'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="time per shape and precision (best repeat kept)")
    args = parser.parse_args()
    print(f"CPU: {cpu_flags()}; torch {torch.__version__}, {torch.get_num_threads()} threads")
    if torch.cuda.is_available():
        gpu = gpu_peak()
        print(f"GPU {gpu['name']}: bf16 {gpu['bf16'] / 1e3:.1f} TFLOP/s, tf32 {gpu['fp32'] / 1e3:.1f} TFLOP/s (8192^3 products, median)")
    result = peak(args.seconds)
    for precision in ("fp32", "bf16"):
        shapes = "  ".join(f"{name} {value:7.1f}" for name, value in result["shapes"][precision].items())
        print(f"{precision}: peak {result[precision]:7.1f} GFLOP/s   ({shapes})")
    print(f"bf16 / fp32: {result['bf16'] / result['fp32']:.2f}x; native bf16: {result['native_bf16']}")
    print(json.dumps({k: result[k] for k in ("threads", "native_bf16", "fp32", "bf16")} | {"cpu": cpu_flags()}))


if __name__ == "__main__":
    main()
