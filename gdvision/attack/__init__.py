"""Adversarial perturbations that fool feature matching (the ``attack`` solver)."""
