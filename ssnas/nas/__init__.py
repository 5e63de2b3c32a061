"""The maths of a differentiable architecture search, as the papers write it: candidate ops, the mixed op,
cells, the supernet base class, the search-space contract, the uniform genotype view, the second-order
architecture gradient and the search diagnostics. Space-agnostic: nothing here dispatches on a space name."""
