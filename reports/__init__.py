"""Report rendering: evaluation results (metrics.json + plots) to one self-contained HTML file.

Knows nothing of models; reads what `dien-batch evaluate` wrote.
"""
