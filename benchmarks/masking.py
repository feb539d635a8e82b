"""What the credential masker costs a param value, on the caller's thread.

    python benchmarks/masking.py [--repeats R]

Every param value, tag and run name passes ``tracked.core.text.mask_secrets``. Each kind
of value below is timed R times, alternating with ``to_text`` (the conversion every value
gets anyway) so that machine drift hits both alike; the best of R is reported, in
microseconds per value, with the ratio to ``to_text``.
"""

from __future__ import annotations

import argparse
import timeit

from tracked.core.text import mask_secrets, to_text

KINDS = {
    "plain (100, auto, l2)": ["100", "auto", "0.001", "l2", "None", "True", "lbfgs"],
    "pairs (n_estimators=100)": ["n_estimators=100", "LogisticRegression(C=1.0, max_iter=500)"],
    "a URI with credentials": ["postgresql://u:pw@db.example.com/x?sslmode=require"],
    "a secret (AKIA..., ghp_...)": ["AKIAQ7ZX3MPL4VW2RT6Y", "ghp_" + "a1B2" * 9],
    "10,000 characters of text": ["lorem ipsum, dolor: sit=amet " * 345],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"{'value':<30} {'mask_secrets':>14} {'to_text':>10} {'ratio':>7}")
    for kind, values in KINDS.items():
        number = max(1, 20_000 // sum(len(v) // 100 + 1 for v in values))
        masked, converted = [], []
        for _ in range(args.repeats):
            masked.append(
                timeit.timeit(lambda vs=values: [mask_secrets(v) for v in vs], number=number)
            )
            converted.append(
                timeit.timeit(lambda vs=values: [to_text(v) for v in vs], number=number)
            )
        per = len(values) * number
        mask_us, text_us = min(masked) / per * 1e6, min(converted) / per * 1e6
        print(f"{kind:<30} {mask_us:>11.2f} us {text_us:>7.2f} us {mask_us / text_us:>7.1f}")


if __name__ == "__main__":
    main()
