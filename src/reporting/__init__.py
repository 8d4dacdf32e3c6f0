"""Run records (results.jsonl), W&B logging, and the builders of the paper's tables and figures."""
