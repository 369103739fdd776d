"""Running many items: the manifest engine, torchrun distribution, read-ahead, comparison of two runs."""
