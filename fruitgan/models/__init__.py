"""Stage 4: the models/ tree: paths, files, the index, which figures are reported."""
