"""Dense depth from calibrated views: plane sweep, aggregation, gradient refinement, occlusion fill."""
