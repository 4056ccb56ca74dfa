#!/usr/bin/env python
"""Trains Glow as the original OpenAI train.py (`glow-train` once installed): glow_tf/cli/train.py."""
from glow_tf.cli.train import main

if __name__ == "__main__":
    main()
