"""Can people tell? The spot-the-fake test: its session, its web page and its record."""
