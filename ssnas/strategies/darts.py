"""Plain DARTS (Liu, Simonyan, Yang, ICLR 2019): softmax op weights (Sec. 2.2, Eq. 2), first- or second-order
bilevel steps (Sec. 2.3), the strongest op per edge (Sec. 2.4). Known to collapse towards parameter-free ops on
long searches (Zela et al., ICLR 2020; on NAS-Bench-201 to the all-skip cell, 54.30%, Dong & Yang 2020)."""
from __future__ import annotations

from ssnas.strategies.base import Strategy


class Darts(Strategy):
    name = "darts"
    summary = "plain DARTS: softmax(alpha), argmax derivation (Liu et al. 2019)"
