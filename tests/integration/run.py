#!/usr/bin/env python3
"""Runs fulcrum's integration tests, one after the other.

    FULCRUM_BIN=build/fulcrum python3 tests/integration/run.py [-k SUBSTRING]... [-x] [-v]

Tests are the functions named test_* in tests/integration/test_*.py, taken in
file and definition order; each gets a harness.Ctx. One line per test
(PASS/FAIL/SKIP, name, seconds), then a summary; exit status 0 only if none
failed. -k keeps the tests whose "module.function" name contains SUBSTRING
(repeatable: any match), -x stops at the first failure, -v prints the tail of
fulcrum's stderr for failures.
"""

import argparse
import glob
import importlib
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


def main():
    ap = argparse.ArgumentParser(description="fulcrum integration tests")
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

    print(f"fulcrum integration tests: {harness.BIN} (timeout scale {harness.SCALE:g})", flush=True)
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    failed = []
    t_all = time.monotonic()
    for name, fn in tests:
        t0 = time.monotonic()
        status, detail = run_one(name, fn, opts.v)
        dt = time.monotonic() - t0
        counts[status] += 1
        line = f"{status} {name} {dt:.2f}s"
        if status == "SKIP":
            line += f" ({detail})"
        print(line, flush=True)
        if status == "FAIL":
            failed.append(name)
            print("    " + detail.rstrip().replace("\n", "\n    "), flush=True)
            if opts.x:
                break
    total = time.monotonic() - t_all
    print(f"\n{counts['PASS']} passed, {counts['FAIL']} failed, {counts['SKIP']} skipped "
          f"in {total:.1f}s")
    for n in failed:
        print(f"FAILED {n}")
    return 0 if counts["FAIL"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
