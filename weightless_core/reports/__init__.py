"""What a run produced: the typed report, the CLI's tables and the self-contained HTML page."""
