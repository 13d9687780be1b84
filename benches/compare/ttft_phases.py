#!/usr/bin/env python3
"""Splits the time of sequential requests through a middle (the gateway or the minimal proxy)
into phases, from the scheduler's wake-ups (`perf sched record`, then `perf sched timehist -w`).

The setup: a client on one keep-alive connection sending one request at a time (the bench's
`ttft` model streamed, or any model not streamed), the middle, and the bench's upstream role,
all on this machine. Per request:

- request:  the client wakes the middle (request sent) -> the middle wakes an upstream thread
            (request forwarded): the middle's wait to run and its work before the upstream write;
- upstream: the middle wakes the upstream -> the upstream wakes the middle (first bytes
            written back);
- relay:    the upstream wakes the middle -> the middle wakes the client: the client's first
            bytes (for a stream, the head and the role event; the token follows in a second
            write, which this does not see);
- idle:     the share of requests whose upstream thread was switched in straight from a CPU's
            idle task after 1 ms or more of idleness, and the thread's wait to run in either case.

A request is counted only when all four wake-ups were traced (a thread already running is not
woken). The upstream's threads are matched by `/<pid>]`, so its main thread (`name[pid]`) is
not: the bench's roles serve on tokio workers.

Usage (pids from `ps`; the middle's threads by a part of their name as timehist prints them,
e.g. `mcpmw-core` for the gateway, `/<pid>]` for the proxy role; the client by its name's
start, `python3` by default):

    perf sched record -o sched.data -- sleep 10   # while the client runs
    perf sched timehist -i sched.data -w | python3 ttft_phases.py <upstream pid> <middle> [client]
"""

import io
import re
import statistics
import sys

WAKE = re.compile(r"\s*([\d.]+) \[(\d+)\]\s+(\S+)\s+awakened: (\S+)")
# time, cpu, task, wait time, scheduling delay, run time (ms), printed when the task leaves the CPU
RUN = re.compile(r"\s*([\d.]+) \[(\d+)\]\s+(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")
# A task switched in as the idle task left counts as coming from idle within this (s).
SAME_SWITCH = 5e-6


def phases(lines, upstream_pid, middle, client):
    def is_upstream(task):
        return f"/{upstream_pid}]" in task

    started, done = 0, []
    idle_until = {}  # cpu -> (when its idle task left the CPU, how long it had been idle, s)
    waking = {}  # upstream thread -> the request that woke it, until its next run row
    req = None
    for line in lines:
        wake = WAKE.match(line)
        if wake:
            at, who, whom = float(wake.group(1)), wake.group(3), wake.group(4)
            if who.startswith(client) and middle in whom:
                req = {"sent": at}
                started += 1
            elif req is None:
                continue
            elif middle in who and is_upstream(whom) and "forwarded" not in req:
                req["forwarded"] = at
                waking[whom] = req
            elif is_upstream(who) and middle in whom and "forwarded" in req and "answered" not in req:
                req["answered"] = at
            elif middle in who and whom.startswith(client) and "answered" in req:
                req["out"] = at
                done.append(req)
                req = None
            continue
        run = RUN.match(line)
        if not run:
            continue
        at, cpu, task = float(run.group(1)), run.group(2), run.group(3)
        ran = float(run.group(6)) / 1000
        if task == "<idle>":
            idle_until[cpu] = (at, ran)
        elif task in waking:
            woke = waking.pop(task)
            left_idle, idle = idle_until.get(cpu, (None, 0.0))
            from_idle = left_idle is not None and abs(at - ran - left_idle) <= SAME_SWITCH
            woke["cold"] = from_idle and idle >= 1e-3
            woke["delay"] = float(run.group(5)) / 1000
    return started, done


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    client = sys.argv[3] if len(sys.argv) == 4 else "python3"
    lines = io.TextIOWrapper(sys.stdin.buffer, errors="replace")
    started, done = phases(lines, sys.argv[1], sys.argv[2], client)
    if not done:
        sys.exit("no complete request found")
    spans = {
        "request": [r["forwarded"] - r["sent"] for r in done],
        "upstream": [r["answered"] - r["forwarded"] for r in done],
        "relay": [r["out"] - r["answered"] for r in done],
        "total": [r["out"] - r["sent"] for r in done],
    }
    us = lambda v: f"{statistics.median(v) * 1e6:.0f} µs" if v else "-"
    print(" ".join(f"{k} {us(v)}" for k, v in spans.items()), f"(medians of {len(done)} of {started} requests)")
    placed = [r for r in done if "cold" in r]
    cold = [r["delay"] for r in placed if r["cold"]]
    warm = [r["delay"] for r in placed if not r["cold"]]
    share = 100 * len(cold) / max(1, len(placed))
    print(
        f"upstream switched in from a CPU idle >= 1 ms: {share:.0f} % of {len(placed)} "
        f"(waited {us(cold)}; otherwise {us(warm)})"
    )


if __name__ == "__main__":
    main()
