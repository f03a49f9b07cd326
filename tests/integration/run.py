#!/usr/bin/env python3
"""Runs fulcrum's integration tests, JOBS at a time.

    FULCRUM_BIN=build/fulcrum python3 tests/integration/run.py [-j JOBS] [-k SUBSTRING]... [-x] [-v]

Tests are the functions named test_* in tests/integration/test_*.py, taken in
file and definition order; each gets a harness.Ctx. -j runs that many tests
side by side, each job a process of its own with its own slice of the ports
free_port() hands out (most of a test's time is spent waiting on timeouts and
processes, not on the CPU). One line per test as it ends (PASS/FAIL/SKIP,
name, seconds), then a summary; exit status 0 only if none failed. -k keeps
the tests whose "module.function" name contains SUBSTRING (repeatable: any
match), -x stops handing out tests after the first failure, -v prints the tail
of fulcrum's stderr for failures.
"""

import argparse
import glob
import importlib
import multiprocessing
import multiprocessing.connection
import os
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True  # no __pycache__ in the source tree

import harness  # noqa: E402


def collect():
    tests = []
    for path in sorted(glob.glob(os.path.join(HERE, "test_*.py"))):
        modname = os.path.basename(path)[:-3]
        mod = importlib.import_module(modname)
        for name, fn in vars(mod).items():
            if name.startswith("test_") and callable(fn):
                tests.append((f"{modname[5:]}.{name[5:]}", fn))
    return tests


def run_one(name, fn, verbose):
    ctx = harness.Ctx(name)
    status, detail = "PASS", ""
    try:
        fn(ctx)
    except harness.Skip as e:
        status, detail = "SKIP", str(e)
    except Exception:  # noqa: BLE001 - any failure of the test is reported
        status, detail = "FAIL", traceback.format_exc()
    try:
        ctx.finish(ok=(status == "PASS"))
    except Exception:  # noqa: BLE001
        if status != "FAIL":
            status, detail = "FAIL", "at the end of the test:\n" + traceback.format_exc()
    if status == "FAIL":
        detail += f"\n(temp dir kept: {ctx.tmp})"
        if verbose:
            detail += "\n" + ctx.stderr_tails()
    return status, detail


def job(slot, jobs, tests, todo, out, stop, verbose):
    """One job's loop: takes test indexes from TODO until a None (or STOP),
    runs each and sends ("start", index) and ("end", index, status, detail,
    seconds) on its pipe OUT. A send is written before it returns, so a job
    that dies in a test has said which one."""
    os.environ["FULCRUM_TEST_SLICE"] = f"{slot}/{jobs}"
    while not stop.is_set():
        i = todo.get()
        if i is None:
            return
        out.send(("start", i))
        name, fn = tests[i]
        t0 = time.monotonic()
        status, detail = run_one(name, fn, verbose)
        out.send(("end", i, status, detail, time.monotonic() - t0))


def main():
    ap = argparse.ArgumentParser(description="fulcrum integration tests")
    ap.add_argument("-j", type=int, default=1, metavar="JOBS", help="run this many tests at once")
    ap.add_argument("-k", action="append", default=[], help="run tests whose name contains this")
    ap.add_argument("-x", action="store_true", help="stop at the first failure")
    ap.add_argument("-v", action="store_true", help="show fulcrum's stderr for failures")
    ap.add_argument("--list", action="store_true", help="list the tests and exit")
    opts = ap.parse_args()

    if not os.access(harness.BIN, os.X_OK):
        print(f"fulcrum binary not found: {harness.BIN} (set FULCRUM_BIN)", file=sys.stderr)
        return 2

    tests = [(n, f) for n, f in collect() if not opts.k or any(k in n for k in opts.k)]
    if opts.list:
        for n, _ in tests:
            print(n)
        return 0

    jobs = max(1, min(opts.j, len(tests)))
    print(f"fulcrum integration tests: {harness.BIN} (timeout scale {harness.SCALE:g}, "
          f"{jobs} at a time)", flush=True)
    mp = multiprocessing.get_context("fork")
    # SimpleQueue: put() writes at once, with no thread to fork around (the
    # jobs start first, so that a queue longer than a pipe holds cannot
    # block the puts).
    todo, stop = mp.SimpleQueue(), mp.Event()

    def spawn(slot):
        """A job in SLOT; returns the reading end of its pipe."""
        r, w = mp.Pipe(duplex=False)
        p = mp.Process(target=job, args=(slot, jobs, tests, todo, w, stop, opts.v))
        p.start()
        w.close()  # the job's end only: EOF on r once it has exited
        r.slot, r.proc = slot, p
        return r

    pipes = [spawn(slot) for slot in range(jobs)]
    for i in range(len(tests)):
        todo.put(i)
    for _ in range(jobs):
        todo.put(None)
    running = {}  # slot -> index of the test it runs
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    failed = []
    t_all = time.monotonic()

    def report(name, status, detail, dt):
        counts[status] += 1
        line = f"{status} {name} {dt:.2f}s"
        if status == "SKIP":
            line += f" ({detail})"
        print(line, flush=True)
        if status == "FAIL":
            failed.append(name)
            print("    " + detail.rstrip().replace("\n", "\n    "), flush=True)
            if opts.x:
                stop.set()

    while pipes:
        for r in multiprocessing.connection.wait(pipes):
            try:
                msg = r.recv()
            except EOFError:
                # The job has exited, and all it sent has been read. One
                # that was in a test died in it (the test killed its own
                # process, say): that test fails, and a fresh job takes
                # the slot, with the None the dead one had not taken.
                pipes.remove(r)
                r.proc.join()
                if r.slot in running:
                    report(tests[running.pop(r.slot)][0], "FAIL",
                           f"the test's process died (exit status {r.proc.exitcode})", 0.0)
                    if not stop.is_set():
                        pipes.append(spawn(r.slot))
                r.close()
                continue
            if msg[0] == "start":
                running[r.slot] = msg[1]
            else:
                _, i, status, detail, dt = msg
                running.pop(r.slot, None)
                report(tests[i][0], status, detail, dt)
    unrun = len(tests) - sum(counts.values())
    if unrun and not stop.is_set():
        counts["FAIL"] += unrun
        failed.append(f"{unrun} tests that no job ran")
    total = time.monotonic() - t_all
    print(f"\n{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
          f"in {total:.1f}s")
    for n in failed:
        print(f"FAILED {n}")
    return 0 if counts["FAIL"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
