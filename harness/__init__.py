"""The comparison: runs rows, compares trajectories, reports. Never imports a
framework itself: trajectories reach it as numpy arrays."""
