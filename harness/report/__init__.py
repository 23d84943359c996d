"""What the reports share: labels and number formats, figures, the progress bar."""
