"""Repository tooling for the FlashRT Triton kernel collection.

Never shipped inside a Hub package. Entry point: the ``flashrt`` command
(``flashrt build | check | sync | validate | bench``).
"""
