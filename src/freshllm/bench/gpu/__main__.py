"""``python -m freshllm.bench.gpu``: see the package docstring."""

from . import main

if __name__ == "__main__":
    main()
