#!/usr/bin/env python
"""Sample grids, interpolations, manipulations, reconstructions (`glow-sample` once installed): glow_tf/cli/sample.py."""
from glow_tf.cli.sample import main

if __name__ == "__main__":
    main()
