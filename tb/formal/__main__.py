"""Run every formal proof at its long depth and check every seeded bug:
``python -m tb.formal [--short] [-k NAME] [--no-bugs | --bugs-only] [--trace]``.

Prints one line per proof (outcome, depth, seconds) and writes ``build/formal/summary.json``.
Exits non-zero when a proof fails (the counterexample VCD path is printed; proofs listed in
``KNOWN_FAILURES`` are reported but do not count) or a seeded bug is not found.
"""

import argparse
import json
import sys
import time

from .proofs import KNOWN_FAILURES, PROOFS, SEEDED_BUGS
from .runner import format_trace, formal_dir, prove


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m tb.formal", description="Run the formal proofs.")
    parser.add_argument("--short", action="store_true", help="the pytest depths")
    parser.add_argument("-k", dest="select", default="", help="only proofs whose name contains this")
    parser.add_argument("--no-bugs", action="store_true", help="skip the seeded bugs")
    parser.add_argument("--bugs-only", action="store_true", help="only the seeded bugs")
    parser.add_argument("--trace", action="store_true", help="print a failed proof's trace")
    args = parser.parse_args(argv)
    rows, bad = [], 0
    for p in PROOFS + KNOWN_FAILURES:
        if args.select not in p.name or args.bugs_only:
            continue
        depth = p.depth if args.short else p.long_depth
        cpu = time.process_time()
        r = prove(p.make(), name=p.name, mode=p.mode, depth=depth, check=False)
        known = p in KNOWN_FAILURES
        print(("(known bug) " if known else "") + str(r), flush=True)
        if r.status == "failed":
            bad += not known
            if args.trace:
                print(format_trace(r.vcd))
        rows.append({"name": p.name, "status": r.status, "depth": r.depth, "mode": p.mode,
                     "seconds": round(r.seconds, 2), "params": p.params,
                     "properties": p.properties, "known_failure": known,
                     "vcd": str(r.vcd) if r.vcd else None})
    if not args.no_bugs:
        for b in SEEDED_BUGS:
            if args.select not in b.proof:
                continue
            r = prove(b.make(), name=f"bug_{b.proof}_{b.bug}", mode="bmc", depth=b.depth,
                      check=False)
            found = r.status == "failed"
            bad += not found
            print(f"seeded bug {b.proof}/{b.bug}: {'found' if found else 'NOT FOUND'} "
                  f"(step {r.depth}, {r.seconds:.1f} s)", flush=True)
            rows.append({"name": f"bug_{b.proof}_{b.bug}", "status": r.status,
                         "depth": r.depth, "seconds": round(r.seconds, 2)})
    out = formal_dir() / "summary.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"summary: {out}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
