"""Stage 1: Google's QuickDraw files -> image versions -> NPZ datasets, and the held-out split."""
