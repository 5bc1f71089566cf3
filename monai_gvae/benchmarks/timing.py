"""Timing helpers for figures that are ratios measured side by side in one process (benchmark rule 7).

Repetitions of the compared arms are interleaved (the order rotates each repetition) and the median of the
per-repetition ratios is reported with its min-max, because the machine may be shared. A ``clock`` is
:func:`time.process_time` (this process's CPU time: others' load on a shared machine disturbs it much less than
the wall clock, but it equals latency only with one thread and no GPU) or :func:`time.perf_counter`.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from monai_gvae.benchmarks.report import cpu_model

__all__ = [
    "Clock",
    "sync",
    "timed",
    "interleaved",
    "ratio_stats",
    "fmt_ratio",
    "verdict",
    "flop_counter",
    "profiler_peak_bytes",
    "machine_info",
]

Clock = Callable[[], float]
"""A clock in seconds: ``time.process_time`` or ``time.perf_counter``."""


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA), so that a clock reading covers it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, clock: Clock) -> float:
    """Seconds ``fn()`` takes on ``clock``, the device synchronised before and after."""
    sync(device)
    start = clock()
    fn()
    sync(device)
    return clock() - start


def interleaved(
    arms: Mapping[str, Callable[[], object]], reps: int, device: torch.device, clock: Clock
) -> dict[str, list[float]]:
    """Seconds per repetition of each arm; the arms' order rotates each repetition.

    Example::

        times = interleaved({"a": f, "b": g}, reps=5, device=torch.device("cpu"), clock=time.perf_counter)
        ratio_stats(times["a"], times["b"])
    """
    names = list(arms)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(reps):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed(arms[name], device, clock))
    return times


def ratio_stats(num: Sequence[float], den: Sequence[float]) -> tuple[float, float, float]:
    """Median, min and max of the per-repetition ratios ``num[i] / den[i]``."""
    ratios = [a / b for a, b in zip(num, den)]
    return statistics.median(ratios), min(ratios), max(ratios)


def fmt_ratio(stats: tuple[float, float, float], reps: int) -> str:
    """``median (median of reps, min-max lo-hi)`` with three decimals."""
    med, lo, hi = stats
    return f"{med:.3f} (median of {reps}, min-max {lo:.3f}-{hi:.3f})"


def verdict(ok: bool) -> str:
    """``MET`` or ``NOT MET`` (a target)."""
    return "MET" if ok else "NOT MET"


def flop_counter() -> Any:
    """``FlopCounterMode`` counting totals only.

    Its per-module tracker registers multi-grad hooks that fail inside ``torch.autograd.grad`` on a leaf input
    ("A leaf node was passed to _will_engine_execute_node"), which is what the gradient penalty does; totals
    need no module tracking, so the tracker is replaced by one that tracks nothing.

    Example::

        with flop_counter() as fc:
            net(x).sum().backward()
        fc.get_total_flops()
    """
    from torch.utils.flop_counter import FlopCounterMode

    class _NoModuleTracker:
        parents = {"Global"}

        def __enter__(self):
            return self

        def __exit__(self, *args):
            return None

    counter = FlopCounterMode(display=False)
    counter.mod_tracker = _NoModuleTracker()
    return counter


def profiler_peak_bytes(prof: Any) -> float:
    """Peak of the running sum of PyTorch's CPU-allocator allocation/free events recorded by a finished
    ``torch.profiler.profile(profile_memory=True)``."""
    from torch._C._profiler import _EventType

    allocations: list[tuple[int, int]] = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        if event.tag == _EventType.Allocation and event.extra_fields.device.type == "cpu":
            allocations.append((event.start_time_ns, event.extra_fields.alloc_size))
        stack.extend(event.children)
    allocations.sort()
    live = peak = 0
    for _, size in allocations:
        live += size
        peak = max(peak, live)
    return float(peak)


def machine_info(device: torch.device) -> dict[str, Any]:
    """CPU model and count, torch version and threads, the device (and GPU name), and the load average now."""
    info = {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info
