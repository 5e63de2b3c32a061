"""Search strategies: how a differentiable search decides (one module each; `ssnas list` names them).

The contract is `ssnas.strategies.base.Strategy`; `ssnas.registry.strategy(name)` finds a strategy by name.
"""
