"""Stage 2: training's parts: config, batches, the grouped step, augmentation, checkpoints, records, estimate, milestones, plots."""
