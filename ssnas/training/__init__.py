"""What every training loop shares: the objective contract, momentum encoders, optimisers and schedules, and
the kNN probe of frozen features."""
