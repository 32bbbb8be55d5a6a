"""Grid inference: pipeline assembly from a typed spec, cell gathering, the chunk runner, Dask."""
