#!/usr/bin/env python3
"""Splits the time to first token of sequential streamed requests into phases, from the
scheduler's wake-ups (`perf sched record`, then `perf sched timehist -w`).

The setup is the bench's `ttft` model: a client on one keep-alive connection, a middle (the
gateway or the minimal proxy) and the bench's upstream role, all on this machine. Per request:

- request:  the client wakes the middle (request sent) -> the middle wakes the upstream
            (request forwarded): the middle's work before the upstream write;
- upstream: the middle wakes the upstream -> the upstream wakes the middle (first events
            written); `up_delay` is the first part of it, the upstream thread's wait to run;
- relay:    the upstream wakes the middle -> the middle wakes the client (first token out);
- idle>=1ms: the share of requests whose upstream thread was put on a CPU idle for 1 ms or
            more, and the median wait to run in either case.

Usage (pids from `ps`; the middle's threads by a part of their name as timehist prints them,
e.g. `mcpmw-core` for the gateway, `/<pid>]` for the proxy role):

    perf sched record -o sched.data -- sleep 10   # while the client runs
    perf sched timehist -i sched.data -w | python3 ttft_phases.py <upstream pid> <middle>
"""

import re
import statistics
import sys

WAKE = re.compile(r"\s*([\d.]+) \[(\d+)\]\s+(\S+)\s+awakened: (\S+)")
# time, cpu, task, wait time, scheduling delay, run time (ms)
RUN = re.compile(r"\s*([\d.]+) \[(\d+)\]\s+(\S+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)")


def phases(lines, upstream_pid, middle):
    def is_upstream(task):
        return f"/{upstream_pid}]" in task

    out = {"request": [], "upstream": [], "relay": [], "total": []}
    delays = {True: [], False: []}
    idle_for = {}  # cpu -> how long it had been idle when it last left idle (ms)
    req = None
    for line in lines:
        wake = WAKE.match(line)
        if wake:
            at, who, whom = float(wake.group(1)), wake.group(3), wake.group(4)
            if who.startswith("python3") and middle in whom:
                req = {"sent": at}
            elif req is None:
                continue
            elif middle in who and is_upstream(whom) and "forwarded" not in req:
                req.update(forwarded=at, thread=whom)
            elif is_upstream(who) and middle in whom and "forwarded" in req and "answered" not in req:
                req["answered"] = at
            elif middle in who and whom.startswith("python3") and "answered" in req:
                out["request"].append(req["forwarded"] - req["sent"])
                out["upstream"].append(req["answered"] - req["forwarded"])
                out["relay"].append(at - req["answered"])
                out["total"].append(at - req["sent"])
                req = None
            continue
        run = RUN.match(line)
        if not run:
            continue
        cpu, task = run.group(2), run.group(3)
        if task == "<idle>":
            idle_for[cpu] = float(run.group(6))
        elif req is not None and task == req.get("thread") and "delay" not in req:
            req["delay"] = True
            delays[idle_for.get(cpu, 0.0) >= 1.0].append(float(run.group(5)) * 1000)
    return out, delays


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    out, delays = phases(sys.stdin, sys.argv[1], sys.argv[2])
    if not out["total"]:
        sys.exit("no complete request found")
    us = lambda v: statistics.median(v) * 1e6
    print(" ".join(f"{k} {us(v):.0f} µs" for k, v in out.items()), f"(median of {len(out['total'])} requests)")
    cold, warm = delays[True], delays[False]
    share = 100 * len(cold) / max(1, len(cold) + len(warm))
    med = lambda v: f"{statistics.median(v):.0f} µs" if v else "-"
    print(f"upstream put on a CPU idle >= 1 ms: {share:.0f} % (waited {med(cold)}; otherwise {med(warm)})")


if __name__ == "__main__":
    main()
