"""Writers and readers of what users open: COG, Zarr, PNG, QGIS styles and projects."""
