"""GRU + AGRU (ablation): the attention weight replaces the update gate."""

from ._sequence import EvolvingModel


class Model(EvolvingModel):
    cell = "agru"
    exportable = False
