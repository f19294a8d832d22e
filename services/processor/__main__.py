"""`python -m services.processor`: run the stream processor until SIGTERM."""

from __future__ import annotations

import sys

from modstack.kafka import BrokerUnavailable
from modstack.log import configure_logging
from services.processor.service import RepoNotApplied, run
from services.processor.settings import ProcessorSettings


def main() -> int:
    """Read settings once, run; exit 2 with one clear line when the broker is unreachable or
    the Feast repo is not applied."""
    settings = ProcessorSettings()
    log = configure_logging("processor", settings.log_level)
    try:
        run(settings)
    except (BrokerUnavailable, RepoNotApplied) as exc:
        log.error("%s", exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
