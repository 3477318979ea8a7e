"""BaseModel (the paper's Embedding & MLP): sum pooling of the history, no interest vector."""

from ..spine import CTRModel


class Model(CTRModel):
    default_activation = "prelu"
