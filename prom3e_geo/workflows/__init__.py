"""One function per user task, what the CLI and notebooks call (docs/api.md).

`grid_mask`, `diversity`, `fetch`, `embed`, `sdm`, `uncertainty`, `ica`, `compare`,
`evaluation`, `qgis_project`, `prepare_training`. A workflow takes its own spec first, then where
its data come from and where its results go; settings, a progress callback and the command line
for the provenance are keyword arguments. It returns a result the caller reports, reports
progress through callbacks and never prints.
"""
