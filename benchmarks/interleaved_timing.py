"""Wall-clock and process-CPU time of steps run side by side, measured the same way by every benchmark here."""

import statistics
import time
from collections.abc import Callable


def time_interleaved(
    steps: dict[str, Callable[[], None]], repeats: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Runs every step once (warm-up: allocator, compile, lazy init), then `repeats` rounds of all of them in turn, so
    a change in the machine's load hits every step alike. Returns the wall-clock and the process-CPU seconds of each
    timed run, by step name."""
    for step in steps.values():
        step()
    wall = {name: [] for name in steps}
    cpu = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start, cpu_start = time.perf_counter(), time.process_time()
            step()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
    return wall, cpu


def medians(wall: dict[str, list[float]], cpu: dict[str, list[float]]) -> dict[str, float]:
    """`{name: median wall-clock seconds, name + "_cpu": median process-CPU seconds}`."""
    result = {name: statistics.median(t) for name, t in wall.items()}
    result.update({name + "_cpu": statistics.median(t) for name, t in cpu.items()})
    return result
