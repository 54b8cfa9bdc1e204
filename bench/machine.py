"""What machine a benchmark ran on, for its report; dropping the page cache for cold reads."""
from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def status_mib(field: str, pid="self") -> float:
    """A field of a process's /proc status in MiB (VmHWM: its peak resident memory, VmRSS: now;
    pages shared with the parent count), 0 where it cannot be read."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def drop_page_cache() -> bool:
    """Empty the OS page cache (root only); False where that is not allowed."""
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False
