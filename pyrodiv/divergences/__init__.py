"""The divergence core: generators (the maths of f), estimators (pure torch), targets (what P
gives), traces (the one runner of Pyro programs) and the losses that join them."""
