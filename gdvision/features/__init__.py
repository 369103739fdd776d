"""SIFT-like features on tensors: scale space, detectors, orientations, descriptors, matching, RANSAC."""
