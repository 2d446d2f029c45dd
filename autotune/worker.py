"""The child side of `measure.run_isolated`: `python -m xchip.autotune.worker RESULT_FILE`
reads a pickled (sys.path, payload) from stdin, where payload pickles (fn, args); runs
fn(*args) and pickles its dict result into RESULT_FILE. A fresh interpreter, not a
multiprocessing child: it never re-imports the caller's __main__ (a script without an
`if __name__ == "__main__"` guard would run again), and it inherits no thread pools."""

from __future__ import annotations

import pickle
import sys


def main() -> None:
    path = sys.argv[1]
    search_path, payload = pickle.load(sys.stdin.buffer)
    sys.path[:] = list(dict.fromkeys(search_path + sys.path))
    try:
        fn, args = pickle.loads(payload)
        result = fn(*args)
    except Exception as e:  # noqa: BLE001 - whatever the candidate does, the search goes on
        lines = str(e).strip().splitlines()
        result = {"status": "failed", "reason": f"{type(e).__name__}: {lines[-1] if lines else ''}"}
    with open(path, "wb") as f:
        pickle.dump(result, f)


if __name__ == "__main__":
    main()
