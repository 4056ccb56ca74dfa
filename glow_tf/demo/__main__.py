"""python -m glow_tf.demo: glow-demo (glow_tf/cli/demo.py)."""
from glow_tf.cli.demo import main

main()
