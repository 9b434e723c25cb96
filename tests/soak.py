"""``make soak``: the model-based test (tests/test_model_based.py) with random seeds for as long as
asked, on one DynamoDB Local. Prints the examples and steps run and the failures found; a failure
prints its seed and Hypothesis's shrunk steps (the reproduction), and ``--seed`` runs that seed again.

    python -m tests.soak --minutes 30        (make soak SOAK_MINUTES=30)
    python -m tests.soak --seed 1234567      (one round of that seed)
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
import traceback

for name, value in {"AWS_DEFAULT_REGION": "us-east-1", "AWS_ACCESS_KEY_ID": "local",
                    "AWS_SECRET_ACCESS_KEY": "local", "POWERTOOLS_TRACE_DISABLED": "true",
                    "POWERTOOLS_METRICS_DISABLED": "true", "POWERTOOLS_METRICS_NAMESPACE": "CreditBillingSoak",
                    "POWERTOOLS_LOG_LEVEL": "CRITICAL", "MODEL_EXAMPLES": "5"}.items():
    os.environ.setdefault(name, value)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES", "10")))
    parser.add_argument("--seed", type=int, default=None, help="run one round of this seed")
    args = parser.parse_args(argv)

    import logging

    from hypothesis import seed, settings
    from hypothesis.stateful import get_state_machine_test

    from localsam.dynamodb_local import DynamoDBLocal

    logging.disable(logging.CRITICAL)
    with DynamoDBLocal() as ddb:
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = ddb.endpoint_url
        from billing.observability import metrics
        from tests.test_model_based import PLAYED, STEPS, BillingMachine

        profile = settings.get_profile("model-soak")
        started = time.monotonic()
        deadline = started + args.minutes * 60
        rounds = failures = 0
        while rounds == 0 or (args.seed is None and time.monotonic() < deadline):
            round_seed = args.seed if args.seed is not None else random.SystemRandom().getrandbits(32)
            test = seed(round_seed)(get_state_machine_test(BillingMachine, settings=profile))
            try:
                test()
            except Exception as exc:  # a failure: report it, with what reproduces it, and go on
                failures += 1
                print(f"\nFAILURE (seed {round_seed}; again: python -m tests.soak --seed {round_seed})", flush=True)
                traceback.print_exception(exc, limit=3, file=sys.stdout)
            metrics.clear_metrics()
            rounds += 1
            print(f"[soak] {(time.monotonic() - started) / 60:.1f} min: rounds {rounds}, examples {STEPS['examples']}, "
                  f"steps {STEPS['steps']}, failures {failures}", flush=True)
    print("played: " + ", ".join(f"{what} {n}" for what, n in sorted(PLAYED.items())), flush=True)
    print(f"soak: {STEPS['examples']} examples, {STEPS['steps']} steps, {failures} failures found "
          f"in {(time.monotonic() - started) / 60:.1f} minutes", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
