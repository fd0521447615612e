#!/usr/bin/env python3
"""Times commands round-robin (so drift in the machine hits every tool
alike) and prints medians and ratios against the first command.

usage: harness.py TITLE RUNS PREPARE -- NAME=CMD NAME=CMD ...
PREPARE runs (untimed) before every timed command. A CMD starting with
"exec " is split into words and run without a shell (for millisecond-scale
commands, where a shell's own start-up would blur the ratio); "{n}" in it
becomes the run's number."""
import shlex, statistics, subprocess, sys, time

def main():
    title, runs, prepare = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    cmds = [a.split("=", 1) for a in sys.argv[5:]]
    times = {name: [] for name, _ in cmds}
    for r in range(runs + 1):  # the first round warms caches, untimed
        order = cmds[r % len(cmds):] + cmds[:r % len(cmds)]
        for name, cmd in order:
            subprocess.run(prepare, shell=True, check=True)
            if cmd.startswith("exec "):
                args = [w.replace("{n}", str(r)) for w in shlex.split(cmd[5:])]
                t = time.perf_counter()
                subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
            else:
                t = time.perf_counter()
                subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
            if r:
                times[name].append(time.perf_counter() - t)
    med = {n: statistics.median(v) for n, v in times.items()}
    first = cmds[0][0]
    print(f"## {title}\n")
    print(f"| command | median (ms) | min (ms) | {first} / command |")
    print("| --- | --- | --- | --- |")
    for name, _ in cmds:
        print(f"| {name} | {med[name] * 1000:.1f} | {min(times[name]) * 1000:.1f} | {med[first] / med[name]:.2f}x |")
    print(f"\n{runs} interleaved runs each.\n")
    return med

if __name__ == "__main__":
    main()
