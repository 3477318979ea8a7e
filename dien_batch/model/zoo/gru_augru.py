"""GRU + AUGRU: DIEN's interest evolving layer (the update gate scaled by attention), without the auxiliary loss."""

from ._sequence import EvolvingModel


class Model(EvolvingModel):
    cell = "augru"
