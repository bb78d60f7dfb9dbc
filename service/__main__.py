"""`python -m service`: runs the gRPC service, configured by STOCK_* environment variables."""

from __future__ import annotations

import logging
import sys

import uvloop

from service.config import Config, ConfigError
from service.server import serve

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def main() -> int:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), format=LOG_FORMAT)
    # uvloop: 10-15% more calls/s than the default loop (measured with loadtest/loadgen).
    uvloop.run(serve(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
