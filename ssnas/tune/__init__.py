"""`ssnas tune`: an Optuna study over the settings an objective and the augmentation declare tunable."""
