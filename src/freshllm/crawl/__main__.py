"""``python -m freshllm.crawl``: the stage's command line (:func:`freshllm.crawl.cli.main`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
