"""Files: images, 16-bit PNG, keypoint files, depth files (pfm, png16, ply), cameras."""
