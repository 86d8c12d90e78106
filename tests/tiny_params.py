"""What the tests that run the trainer on digits_tiny.gin share (importable from any test folder: pytest puts
tests/, conftest.py's folder, on sys.path)."""

import os

TINY = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "train", "digits_tiny.gin")

# The outputs a test comparing a run's metrics and losses with another run's does not read: the export and the
# embeddings (each a save or a pass over the test set).
UNREAD = ("train_and_evaluate.export_model = False", "train_and_evaluate.save_embeddings = 0")
