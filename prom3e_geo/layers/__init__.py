"""Pure layer functions: a store's arrays, a model and encoders in, a LayerSet out."""
