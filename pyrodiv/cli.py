"""The ``pyrodiv`` command line."""

import argparse


def main(argv=None):
    parser = argparse.ArgumentParser(prog="pyrodiv", description=__doc__)
    parser.parse_args(argv)
    parser.print_help()
    return 0
