"""Files in and out: atomic writes, the environment record, trajectory exchange with other
programs, replay files, golden generation."""
