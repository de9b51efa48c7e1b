import sys

sys.dont_write_bytecode = True  # no __pycache__ beside the tools
