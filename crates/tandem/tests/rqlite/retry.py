"""What both client scripts do while the cluster elects a new active node: try again."""

import sys
import time


def until_served(what, attempt, failures, seconds=30):
    """Calls `attempt` until it raises none of `failures`, for at most `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return attempt()
        except failures as error:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: still failing after {seconds}s: {error}")
            print(f"{what}: {error}; retrying", file=sys.stderr, flush=True)
            time.sleep(0.2)
