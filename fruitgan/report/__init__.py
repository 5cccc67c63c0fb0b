"""The technical report (report.ipynb): its figures, tables and analysis text, computed from a run's files."""
