#!/usr/bin/env python3
"""Do numpy, JAX and PyTorch compute the same Adam training of the XOR network?

Run ``python compare.py --help``; the work is done in ``harness.cli``.
"""

import sys

from harness.cli import run

if __name__ == "__main__":
    sys.exit(run())
