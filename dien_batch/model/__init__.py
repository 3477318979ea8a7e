"""DIEN and the paper's baselines on one shared spine (PyTorch).

* `layers`: Dice, MLPs, masked softmax.
* `cells`: the GRU family as one recurrence: GRU, AGRU, AUGRU (paper and official variants); AIGRU is a
  GRU over attention-scaled inputs. The PyTorch reference of the `dien::AUGRU` operator.
* `attention`: bilinear (paper eq. 9) and MLP (authors' code) target attention, DIN's attention.
* `aux_loss`: the auxiliary next-behaviour loss (eq. 7-8).
* `fields`: the feature spec's fields as inputs (an embedding per categorical field, scaled numerics).
* `spine`: what every model shares (embeddings, history sum, final MLP), split into a user side (once
  per request) and a candidate side; `zoo/`: one module per model (`base ... dien`), and the registry.
* `batches`: Arrow/Parquet rows to padded tensors, streamed.
* `store`: safetensors + JSON config, no pickle.
"""
