"""The exact speed route of the supernet and of the evaluation networks (see `use_fast_kernels`)."""
