"""``python -m freshllm.eval``."""

from . import main

if __name__ == "__main__":
    main()
