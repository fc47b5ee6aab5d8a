"""Stages chained: recipe -> train -> export -> bench -> report + model card, and sweeps of it.

`runner` is `tfsparse pipeline` (`make demo`), resumable stage by stage; `sweep` runs it at
several sparsities sharing one dense model.
"""
