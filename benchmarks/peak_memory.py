"""Peak extra memory of one step, measured the same way by every benchmark here (Linux only).

In a fresh process the benchmark builds what it needs, then `step_peak_bytes(step)` resets the kernel's peak-RSS
counter (`echo 5 > /proc/self/clear_refs`, so building does not count), runs the step once and returns the peak
resident set (VmHWM) minus the resident set before the step: the activations, gradients and optimizer state the step
needed. `in_fresh_process(script, argv)` runs `script argv` and reads the number it prints.
"""

import gc
import json
import subprocess
import sys
from collections.abc import Callable


def proc_status_bytes(field: str) -> int:
    """`VmRSS` (resident now) or `VmHWM` (peak resident since the last reset) of this process, from /proc."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def step_peak_bytes(step: Callable[[], None]) -> int:
    gc.collect()
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = proc_status_bytes("VmRSS")
    step()
    return proc_status_bytes("VmHWM") - before


def print_step_peak_bytes(step: Callable[[], None]) -> None:
    """What the fresh process prints for `in_fresh_process`."""
    print(json.dumps({"peak_delta_bytes": step_peak_bytes(step)}))


def in_fresh_process(script: str, argv: list[str]) -> int:
    out = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["peak_delta_bytes"]
