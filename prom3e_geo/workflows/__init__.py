"""One function per user task, what the CLI and notebooks call: `grid`, `diversity`, `fetch`,
`embed`, `sdm`, `uncertainty`, `ica`, `compare`, `evaluate`, `train`.

A workflow takes typed specs (`GridSpec`, `OutputSpec`, `PipelineSpec`, ...), owns the settings,
the store cache, the store <-> model checks and the output writing, and returns a result the
caller reports. It reports progress through callbacks and never prints.
"""
