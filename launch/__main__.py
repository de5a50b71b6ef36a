"""`python -m launch ...` is `amst ...`."""

import sys

from launch.cli import main

if __name__ == "__main__":  # never when imported (multiprocessing's fork server prepares __main__ by path)
    sys.exit(main())
