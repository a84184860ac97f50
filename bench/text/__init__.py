"""Tools for text-task runs (``Task.is_text``, e.g. charlm): ``sample`` writes text from a trained model and
``units`` finds the hidden units that track features of the text."""
