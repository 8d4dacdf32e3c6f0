"""The training corpus: sources (Linguacodus CSV, Code4ML tables), instruction parsing and extraction,
metric-category directions, filters, the split by competition and the prompt templates.

Entry point: `src.corpus.build.build_corpus(cfg) -> DatasetDict(train, validation)`.
"""
