"""What the Meta-World and LIBERO demonstration generators share, and their rollouts.

- :mod:`~c2c.envs.demos.cache`: the on-disk cache of a run (attempt outcomes, recorded episodes) and its size.
- :mod:`~c2c.envs.demos.workers`: worker processes, their kept env, and how many there are by default.
- :mod:`~c2c.envs.demos.report`: the progress bar and the report a generator returns.
- :mod:`~c2c.envs.demos.metaworld_rollouts`, :mod:`~c2c.envs.demos.libero_rollouts`: seeds and expert rollouts.
- :mod:`~c2c.envs.demos.libero_tasks`: which LIBERO tasks have a scripted expert.
- :mod:`~c2c.envs.demos.libero_search`: LIBERO's search with the cameras drawn as it goes, in chunks over workers.

The generators themselves are :func:`c2c.envs.metaworld_demos.generate_metaworld_demos` and
:func:`c2c.envs.libero_demos.generate_libero_demos`.
"""
