"""The read side: where results live and how runs are found and compared (the SQLite store, result files,
selectors, comparisons of stored runs, change points in their history). Torch-free."""
