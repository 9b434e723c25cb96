"""The domain tier: billing rules on in-memory accounts, no DynamoDB, no AWS (runs in seconds:
``make test-domain``)."""

import os

from hypothesis import settings

# `make mutation` (bench/mutation.py) runs the tier once per mutant: the same examples every time (a
# mutant is killed or not, never by luck), no example database shared between the copies.
settings.register_profile("mutation", derandomize=True, database=None, deadline=None)
if os.environ.get("HYPOTHESIS_PROFILE") == "mutation":
    settings.load_profile("mutation")
