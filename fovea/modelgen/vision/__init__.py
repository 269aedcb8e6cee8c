"""A small vision tower for the demo model, trained by Fovea against the frozen Gemma 3 270M.

``pictures`` (synthetic data, Pillow only) and ``export`` (GGUF) import no torch; ``tower``,
``language_model`` and ``train`` need the ``train`` extra (``make train-vision``).
"""
