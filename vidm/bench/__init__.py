"""`vidm bench`: one command measures a model folder and writes its report (report.md, results.json, plots).

One concept per file: `suite.py` lists the measures (adding one is one function registered there),
`context.py` is what every measure is given, `report.py` writes the folder, and each measure is its own
file (`prediction.py`, `digit_identity.py`, `first_frames.py`, `frechet.py`, `speed.py`, `memory.py`).
The digit classifier the identity measures read frames with is pinned: `digit_classifier.py` loads the
committed weights that `python -m vidm.bench.train_classifier` made.
"""
