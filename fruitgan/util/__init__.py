"""Beneath every stage: settings, prompts and errors, safe files, locks, pixels."""
