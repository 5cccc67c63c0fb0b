"""QuickDraw Fruit GAN: the parts beneath the assignment's scripts, one sub-package per stage.

data -> learn -> metrics -> models -> report, with util beneath them all (see CONTRIBUTING.md).
"""
