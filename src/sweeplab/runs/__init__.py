"""What describes a trained run: how pictures become its input (preprocessing.py), its model rebuilt from a
checkpoint (classifier.py), and which run a user means (resolve.py)."""
