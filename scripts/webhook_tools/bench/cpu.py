"""CPU accounting from /proc: utime + stime of a set of processes over a phase's wall time."""

import os
import time

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_stat(pid):
    """(ppid, comm, utime + stime in ticks) of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    comm = text[text.index("(") + 1:text.rindex(")")]
    fields = text[text.rindex(")") + 2:].split()  # fields[0] is the state (field 3 of proc(5))
    return int(fields[1]), comm, int(fields[11]) + int(fields[12])


def process_tree(root):
    """root and its children (nginx's master and workers, the postmaster and its backends)."""
    if root is None or proc_stat(root) is None:
        return []
    children = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = proc_stat(int(name))
            if stat and stat[0] == root:
                children.append(int(name))
    return [root, *children]


class CpuMeter:
    """CPU time of named groups of processes between start() and stop(), as a percentage of one
    core over the wall time between them. Each group is a function returning its pids now; a
    process that exits in between loses what it used (the phases' processes all live through)."""

    def __init__(self, **groups):
        self.groups = groups

    def _ticks(self):
        return {name: {pid: stat[2] for pid in pids() if (stat := proc_stat(pid))}
                for name, pids in self.groups.items()}

    def start(self):
        self.began, self.before = time.monotonic(), self._ticks()
        return self

    def stop(self):
        seconds, after = time.monotonic() - self.began, self._ticks()
        result = {"seconds": round(seconds, 3)}
        for name, ticks in after.items():
            used = sum(t - self.before[name].get(pid, 0) for pid, t in ticks.items()) / CLOCK_TICKS
            result[name] = {"cpu_seconds": round(used, 2),
                            "percent_of_one_core": round(100 * used / seconds, 1) if seconds > 0 else None}
        return result
