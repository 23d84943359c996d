"""The bench's yardsticks: the article's loop re-expressed op for op, and the same
training as a plain C loop (floor.c, package data)."""
