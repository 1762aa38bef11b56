"""Benchmarks: each prints a table and, last, one JSON line (also written to --json_out).

Their flags are argparse, not absl like the runners': benchmarks import one another (inference
reuses train_speed) and the tests call several ``main(argv)`` in one process, where flags defined
in absl's one global registry at import would clash (--models, --json_out, ...)."""
import json


def report(table: str, result: dict, json_out: str | None) -> dict:
    """Prints ``table`` then ``result`` as one JSON line; writes the JSON to ``json_out`` if given."""
    print(table)
    print(json.dumps(result))
    if json_out:
        with open(json_out, 'w') as f:
            json.dump(result, f, indent=2)
    return result
