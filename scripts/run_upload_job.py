"""Run one upload job from this process: ``python -m scripts.run_upload_job JOB_ID``.

Several of these on the same job share its items; none is processed twice.
"""

from __future__ import annotations

import argparse
import sys

from image_tagger.jobs.pool import ComputePool
from image_tagger.jobs.runner import run_upload_job
from image_tagger.logging import configure_logging
from image_tagger.settings import get_settings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job_id", type=int, help="the id of the job to run")
    args = parser.parse_args(argv)

    settings = get_settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    # One analysis process: each image gets the time limit and a crash stays
    # with its image, as in the server.
    pool = ComputePool(
        1,
        max_pixels=settings.max_image_pixels,
        timeout_seconds=settings.item_timeout_seconds,
    )
    try:
        outcome = run_upload_job(args.job_id, executor=pool, settings=settings)
    finally:
        pool.shutdown()
    if outcome.status is None:
        print(f"no job {args.job_id}", file=sys.stderr)
        return 2
    items = "item" if outcome.items_recorded == 1 else "items"
    print(
        f"job {args.job_id}: {outcome.status}; this process recorded "
        f"{outcome.items_recorded} {items}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
