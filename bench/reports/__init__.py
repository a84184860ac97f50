"""What people read, generated from run records alone: the leaderboard (LEADERBOARD.md, leaderboard.csv, the
README block and the flow pictures). Imports neither torch nor Lightning."""
