"""Coarse-to-Control: plan-then-execute vision-language-action policies.

The package is split by responsibility (see the README):

- ``c2c.data``: datasets (LeRobot v3, LIBERO HDF5), statistics, action windows (Eq. 3-4), normalization.
- ``c2c.envs``: simulator wrappers and scripted demonstration generation.
- ``c2c.tokenizer``, ``c2c.policy``, ``c2c.eval``, ``c2c.serve``, ``c2c.analysis``: the model side.

Importing ``c2c`` does no work: submodules are imported on use.
"""

__version__ = "0.1.0"
