"""What changed between two runs: verdicts and their statistics (pure)."""
