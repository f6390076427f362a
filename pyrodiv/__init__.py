"""pyrodiv: fit probability distributions with any divergence, as drop-in Pyro SVI losses."""

__version__ = "0.1.0"
