"""Inference around the losses: the training loop, MCMC baselines, InferenceData, PSIS
diagnostics, the comparison and its figures. ArviZ is reached only through
:mod:`pyrodiv.inference.arviz_adapter`."""
