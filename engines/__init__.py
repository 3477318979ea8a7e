"""Scoring engines behind one interface, and the `dien::AUGRU` operator's implementations.

One module per backend (PyTorch, ONNX Runtime, CUDA/Triton, TensorRT); heavy imports stay inside them.
"""
