"""Shared pieces of heed's PyTorch peer benchmarks: timing, peak-memory probe, machine and torch facts.

Imported by attention_torch.py, g2p_torch.py and compare.py (compare.py uses only the torch-free parts).
"""

import ctypes
import ctypes.util
import datetime
import json
import os
import platform
import re
import subprocess
import sys
import time

# ---------------------------------------------------------------------------
# flop convention, shared with heed's benchmarks


def attention_flops(B, H, L, D, causal, fwd_bwd, S=None):
    """Useful flops of the attention core softmax(Q K^T / sqrt(D)) V.

    forward = 4*B*H*T*S*D (two GEMMs of 2*T*S*D each), halved when causal (and T == S);
    forward+backward = 3.5 x forward (backward counted as 2.5 x forward: five GEMMs
    of the same size against the forward's two). Softmax, scaling and masking are not counted.
    """
    S = L if S is None else S
    f = 4.0 * B * H * L * S * D
    if causal:
        f *= 0.5
    return f * 3.5 if fwd_bwd else f


def projection_flops(B, L, C, fwd_bwd):
    """Flops of the four C x C projections (Q, K, V, output) of nn.MultiheadAttention.

    forward = 4 * 2*B*L*C*C; a linear layer's backward (grad input + grad weight) is 2 x its forward.
    """
    f = 8.0 * B * L * C * C
    return f * 3.0 if fwd_bwd else f


# ---------------------------------------------------------------------------
# peak memory: VmHWM of this process, reset through /proc/self/clear_refs


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


class PeakRss:
    """Peak resident memory of one call, beyond what the process held just before it.

    Linux keeps the high-water mark of resident memory (VmHWM); writing "5" to
    /proc/self/clear_refs resets it to the current resident size. So
        extra = VmHWM after the call - VmRSS just before it
    counts everything the call touched that was not resident before: outputs, gradients,
    saved activations, workspaces, allocator growth. It is page-granular and whole-process,
    so it sees memory torch takes outside Python (which tracemalloc cannot). Before each
    reset glibc's malloc_trim(0) hands freed heap pages back to the kernel, so memory that
    an earlier call freed but glibc kept is counted again when this call reuses it (without
    that, an output that fits in a recycled chunk would show as 0 MiB).
    """

    def __init__(self):
        self.ok = False
        self._trim = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c"))
            self._trim = libc.malloc_trim
        except (OSError, AttributeError, TypeError):
            self._trim = None
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
            self.ok = _status_kib("VmHWM") is not None
        except OSError:
            self.ok = False

    def start(self):
        if not self.ok:
            return
        if self._trim is not None:
            self._trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        self._base = _status_kib("VmRSS")

    def stop_mib(self):
        """Extra MiB since start(), or None where the kernel does not offer the reset."""
        if not self.ok:
            return None
        return max(0, _status_kib("VmHWM") - self._base) / 1024.0


def mem_available_bytes():
    kib = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    kib = int(line.split()[1])
    except OSError:
        pass
    return None if kib is None else kib * 1024


# ---------------------------------------------------------------------------
# contention: how much CPU other processes used while we measured


def _busy_jiffies():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal: busy = all but idle and iowait
    return sum(v[:8]) - v[3] - v[4]


def _own_jiffies():
    with open("/proc/self/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime + stime of all threads, cutime + cstime of children waited for (a benchmark binary)
    return int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])


class CpuMeter:
    """Cores' worth of CPU time that other processes used between start() and stop():
    (all busy CPU time - CPU time of this process and its finished children) / wall time,
    from /proc/stat and /proc/self/stat. 0 on a quiet machine; 1.0 means other processes
    kept one core busy."""

    def __init__(self):
        self.hz = os.sysconf("SC_CLK_TCK")
        try:
            _busy_jiffies(), _own_jiffies()
            self.ok = True
        except (OSError, ValueError, IndexError):
            self.ok = False

    def start(self):
        if self.ok:
            self._t, self._busy, self._own = time.perf_counter(), _busy_jiffies(), _own_jiffies()

    def stop(self, min_window_s=1.0):
        """Others' use in cores; waits until the window is min_window_s long, since /proc/stat
        counts in clock ticks (10 ms) and a shorter window would be mostly rounding."""
        if not self.ok:
            return None
        rest = min_window_s - (time.perf_counter() - self._t)
        if rest > 0:
            time.sleep(rest)
        wall = time.perf_counter() - self._t
        others = (_busy_jiffies() - self._busy) - (_own_jiffies() - self._own)
        return max(0.0, others / self.hz / wall) if wall > 0 else None


def wait_for_quiet(max_wait_s, threshold=0.3, sample_s=1.0):
    """Waits (at most max_wait_s) until other processes use under `threshold` cores over a
    sample_s window. Returns the last measured use of others, in cores."""
    meter = CpuMeter()
    if not meter.ok:
        return None
    deadline = time.perf_counter() + max_wait_s
    while True:
        meter.start()
        time.sleep(sample_s)
        others = meter.stop(min_window_s=sample_s)
        if others < threshold or time.perf_counter() >= deadline:
            return others


# ---------------------------------------------------------------------------
# timing: warm-up, then min of N, capped by a time budget


def time_min(fn, reps, budget_s, warmup=1, min_warm_s=0.2, probe=None, before=None):
    """Runs fn() `warmup` times (more while under min_warm_s), then up to `reps` timed calls,
    stopping early once the timed calls together passed budget_s (but never before one).
    `before` runs untimed before each call (e.g. dropping old gradients). With a PeakRss
    `probe`, one more untimed call measures the peak extra memory, so that the probe's
    malloc_trim never makes a timed call pay page faults it would not otherwise pay.
    Returns (min seconds, number of timed calls, extra MiB or None, others' CPU use in
    cores during the warm-up and timed calls, a window of at least 1 s, or None)."""
    meter = CpuMeter()
    meter.start()
    t_warm = time.perf_counter()
    done = 0
    while done < warmup or (time.perf_counter() - t_warm < min_warm_s and done < 50):
        if before:
            before()
        fn()
        done += 1
    best = float("inf")
    spent = 0.0
    n = 0
    while n < reps:
        if before:
            before()
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best = min(best, dt)
        spent += dt
        n += 1
        if spent >= budget_s:
            break
    others = meter.stop()
    peak = None
    if probe is not None and probe.ok:
        if before:
            before()
        probe.start()
        fn()
        peak = probe.stop_mib()
    return best, n, peak, others


# ---------------------------------------------------------------------------
# machine and torch facts


def lscpu_facts():
    facts = {"model": platform.processor() or "unknown", "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return facts
    kv = {}
    for line in out.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            kv[k.strip()] = v.strip()
    facts["model"] = kv.get("Model name", facts["model"])
    facts["cpus"] = int(kv.get("CPU(s)", facts["cpus"] or 0))
    facts["cores_per_socket"] = kv.get("Core(s) per socket")
    facts["sockets"] = kv.get("Socket(s)")
    facts["threads_per_core"] = kv.get("Thread(s) per core")
    flags = kv.get("Flags", "").split()
    facts["simd"] = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile") if f in flags]
    return facts


def torch_facts(torch):
    cfg = torch.__config__.show()
    blas = re.search(r"BLAS_INFO=([^,\s]*)", cfg)
    if hasattr(torch.backends, "cpu"):
        capability = torch.backends.cpu.get_cpu_capability()
    else:  # torch < 2.0 (Debian's 1.13) only states it in its build configuration
        found = re.search(r"CPU capability usage: (\S+)", cfg)
        capability = found.group(1) if found else None
    return {
        "torch": torch.__version__,
        "torch_path": os.path.dirname(torch.__file__),
        "cuda_build": torch.version.cuda,
        "cpu_capability": capability,
        "blas": blas.group(1) if blas else None,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "openmp": torch.backends.openmp.is_available(),
        "python": sys.version.split()[0],
    }


def meta_record(torch, script, argv):
    rec = {"record": "meta", "script": script, "argv": argv,
           "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds")}
    rec.update(torch_facts(torch))
    rec["machine"] = lscpu_facts()
    rec["loadavg"] = list(os.getloadavg())
    return rec


def emit(rec, out=sys.stdout):
    out.write(json.dumps(rec) + "\n")
    out.flush()


def parse_int_list(text):
    return [int(x) for x in str(text).split(",") if x.strip()]
