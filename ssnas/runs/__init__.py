"""What every run shares: its settings (output folder, seed, device), atomic checkpoints and the metrics log."""
