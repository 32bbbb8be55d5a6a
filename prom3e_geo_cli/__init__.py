"""The `prom3e-geo` command line, imported as `prom3e_geo_cli`: one module per command group."""
